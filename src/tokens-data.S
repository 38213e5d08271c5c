/*
 * tokens-data.S - the Claude tokenizer vocabulary, built into the binary.
 *
 * src/claude-tokenizer.json is the claude.json that the npm package
 * @anthropic-ai/tokenizer ships (its licence: claude-tokenizer.LICENSE).
 * Embedding it means the daemon reads no data file at run time and the
 * vocabulary cannot drift from the code that parses it (tokens.c).
 * The path is relative to the top directory, where make runs the
 * assembler; a NUL follows the bytes so the JSON parser may stop there.
 */

	.section .rodata.tokens_json, "a", @progbits
	.balign	16
	.globl	tokens_json_start
	.hidden	tokens_json_start
	.type	tokens_json_start, @object
tokens_json_start:
	.incbin	"src/claude-tokenizer.json"
	.globl	tokens_json_end
	.hidden	tokens_json_end
	.type	tokens_json_end, @object
tokens_json_end:
	.byte	0
	.size	tokens_json_start, tokens_json_end - tokens_json_start

	/* No executable stack for the binaries this links into. */
	.section .note.GNU-stack, "", @progbits
