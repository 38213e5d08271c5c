// console.js - the web console. It uses only the admin API (/v2); the
// session is the HttpOnly cookie that login sets, never script-readable.
'use strict';

const $ = (sel) => document.querySelector(sel);

async function api(method, path, body) {
  const opts = { method, headers: {}, credentials: 'same-origin' };
  if (body !== undefined) {
    opts.headers['Content-Type'] = 'application/json';
    opts.body = JSON.stringify(body);
  }
  const r = await fetch(path, opts);
  const text = await r.text();
  const data = text ? JSON.parse(text) : null;
  if (!r.ok) {
    const err = new Error((data && data.error && data.error.message) || r.statusText);
    err.status = r.status;
    throw err;
  }
  return data;
}

function cell(tr, text) {
  const td = document.createElement('td');
  td.textContent = text === null || text === undefined ? '' : String(text);
  tr.appendChild(td);
  return td;
}

function show(view) {
  $('#login-view').hidden = view !== 'login';
  $('#main-view').hidden = view !== 'main';
  $('#logout').hidden = view !== 'main';
}

async function refresh() {
  let st;
  try {
    st = await api('GET', '/v2/status');
  } catch (e) {
    if (e.status === 401) { show('login'); return; }
    throw e;
  }
  show('main');
  const dl = $('#status');
  dl.replaceChildren();
  for (const [k, v] of [['version', st.version], ['uptime (s)', st.uptime],
    ['requests', st.counters && st.counters.requests], ['keys', st.keys]]) {
    const dt = document.createElement('dt'); dt.textContent = k;
    const dd = document.createElement('dd'); dd.textContent = v;
    dl.append(dt, dd);
  }
  const pb = $('#procs tbody');
  pb.replaceChildren();
  for (const p of st.processes || []) {
    const tr = document.createElement('tr');
    [p.role, p.pid, p.generation, p.requests, p.connections, p.restarts].forEach((v) => cell(tr, v));
    pb.appendChild(tr);
  }
  const keys = await api('GET', '/v2/keys');
  const kb = $('#keys tbody');
  kb.replaceChildren();
  for (const k of keys.keys || []) {
    const tr = document.createElement('tr');
    [k.id, k.name, k.prefix + '…', k.createdAt, k.lastUsedAt].forEach((v) => cell(tr, v));
    const del = document.createElement('button');
    del.textContent = 'Delete';
    del.addEventListener('click', async () => {
      if (!confirm('Delete key ' + k.name + '?')) return;
      await api('DELETE', '/v2/keys/' + k.id);
      refresh();
    });
    cell(tr, '').appendChild(del);
    kb.appendChild(tr);
  }
}

$('#login-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  $('#login-error').textContent = '';
  try {
    await api('POST', '/v2/auth/login', { password: $('#password').value });
    $('#password').value = '';
    refresh();
  } catch (e) {
    $('#login-error').textContent = e.message;
  }
});

$('#logout').addEventListener('click', async () => {
  try { await api('POST', '/v2/auth/logout'); } finally { show('login'); }
});

$('#key-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const k = await api('POST', '/v2/keys', { name: $('#key-name').value });
  $('#key-name').value = '';
  $('#new-key').hidden = false;
  $('#new-key code').textContent = k.key;
  refresh();
});

refresh().catch((e) => { $('#login-error').textContent = e.message; show('login'); });
