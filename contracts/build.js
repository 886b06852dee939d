#!/usr/bin/env node
// Compile the contracts offline with the pinned solc-js and write one artifact per contract:
//   contracts/src/*.sol  -> sbc/bpiiot/data/contracts/<Name>.json  (shipped with the SDK)
//   contracts/test/*.sol -> tests/sbc/chain/artifacts/<Name>.json  (test-only, not shipped)
// Each artifact holds the ABI, creation bytecode, compiler version and the sha256 of every
// source it was built from. `node contracts/build.js --check` recompiles and exits 1 if a
// committed artifact differs, which is how CI proves the artifacts match the sources.
"use strict";

const crypto = require("crypto");
const fs = require("fs");
const path = require("path");
const solc = require("solc");

const ROOT = path.resolve(__dirname, "..");
const GROUPS = [
  { dir: "contracts/src", out: "sbc/bpiiot/data/contracts" },
  { dir: "contracts/test", out: "tests/sbc/chain/artifacts" },
];
// Cancun rather than solc's default (osaka) so the bytecode runs on every node we test
// against and on public chains that have not taken the newest fork yet.
const EVM_VERSION = "cancun";

function sha256(text) {
  return crypto.createHash("sha256").update(text, "utf8").digest("hex");
}

function compileGroup(group) {
  const dir = path.join(ROOT, group.dir);
  const files = fs.readdirSync(dir).filter((f) => f.endsWith(".sol")).sort();
  const sources = {};
  for (const f of files) {
    sources[`${group.dir}/${f}`] = { content: fs.readFileSync(path.join(dir, f), "utf8") };
  }
  const input = {
    language: "Solidity",
    sources,
    settings: {
      evmVersion: EVM_VERSION,
      optimizer: { enabled: true, runs: 200 },
      outputSelection: { "*": { "*": ["abi", "evm.bytecode.object"] } },
    },
  };
  const output = JSON.parse(solc.compile(JSON.stringify(input)));
  const errors = (output.errors || []).filter((e) => e.severity === "error");
  for (const e of output.errors || []) process.stderr.write(e.formattedMessage + "\n");
  if (errors.length) throw new Error(`solc reported ${errors.length} error(s) in ${group.dir}`);

  const artifacts = {};
  for (const [unit, contracts] of Object.entries(output.contracts)) {
    for (const [name, c] of Object.entries(contracts)) {
      const artifact = {
        contractName: name,
        sourceName: unit,
        compiler: { name: "solc-js", version: solc.version(), evmVersion: EVM_VERSION,
                    optimizer: { enabled: true, runs: 200 } },
        sourceSha256: sha256(sources[unit].content),
        abi: c.abi,
        bytecode: "0x" + c.evm.bytecode.object,
      };
      artifacts[path.join(group.out, `${name}.json`)] = JSON.stringify(artifact, null, 2) + "\n";
    }
  }
  return artifacts;
}

function main() {
  const check = process.argv.includes("--check");
  let stale = 0;
  for (const group of GROUPS) {
    const artifacts = compileGroup(group);
    for (const [rel, text] of Object.entries(artifacts)) {
      const file = path.join(ROOT, rel);
      const current = fs.existsSync(file) ? fs.readFileSync(file, "utf8") : null;
      if (check) {
        if (current !== text) {
          process.stderr.write(`stale: ${rel} (run: node contracts/build.js)\n`);
          stale += 1;
        }
      } else if (current !== text) {
        fs.mkdirSync(path.dirname(file), { recursive: true });
        fs.writeFileSync(file, text);
        process.stdout.write(`wrote ${rel}\n`);
      }
    }
  }
  if (check) {
    process.stdout.write(stale ? `${stale} artifact(s) out of date\n` : "artifacts up to date\n");
    process.exit(stale ? 1 : 0);
  }
}

main();
