#!/usr/bin/env node
// count.js - print countTokens() of @anthropic-ai/tokenizer for each file
// named, as "<count>\t<file>": the reference compare.sh holds our C
// tokenizer to. Files are read as UTF-8, as a JSON request's text is.
'use strict';
const fs = require('fs');
const { countTokens } = require('@anthropic-ai/tokenizer');

for (const f of process.argv.slice(2))
  process.stdout.write(`${countTokens(fs.readFileSync(f, 'utf8'))}\t${f}\n`);
