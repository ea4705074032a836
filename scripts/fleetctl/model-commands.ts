import type { Command } from "commander";
import type { ApiClient } from "./api-client.js";
import { diffVersions, versionFields } from "./model-diff.js";

/** `fleetctl models show NAME VERSION` and `fleetctl models diff NAME A B` (issue 21). */
export function registerModelViewCommands(
  models: Command,
  deps: { client(cmd: Command): ApiClient; isJson(cmd: Command): boolean },
): void {
  models
    .command("show")
    .description("one version: signed lineage, inputs and outputs, variants with their int8 validation")
    .argument("<name>")
    .argument("<version>")
    .action(async (name: string, version: string, _o: unknown, cmd: Command) => {
      const v = await deps.client(cmd).getModelVersion(name, version);
      if (deps.isJson(cmd)) return void console.log(JSON.stringify(v, null, 2));
      console.log(`${v.name}@${v.version}  created ${v.createdAt}`);
      for (const [field, value] of versionFields(v)) console.log(`  ${field}: ${value}`);
    });
  models
    .command("diff")
    .description("what changed between two versions: lineage, inputs/outputs, sizes, validation figures")
    .argument("<name>")
    .argument("<a>", "the older version")
    .argument("<b>", "the newer version")
    .action(async (name: string, a: string, b: string, _o: unknown, cmd: Command) => {
      const api = deps.client(cmd);
      const [va, vb] = await Promise.all([api.getModelVersion(name, a), api.getModelVersion(name, b)]);
      const changes = diffVersions(va, vb);
      if (deps.isJson(cmd)) return void console.log(JSON.stringify({ name, a, b, changes }, null, 2));
      console.log(`${name} ${a} → ${b}: ${changes.length} field(s) differ`);
      for (const c of changes) {
        if (c.a === null) console.log(`  + ${c.field}: ${c.b}`);
        else if (c.b === null) console.log(`  - ${c.field}: ${c.a}`);
        else console.log(`  ~ ${c.field}: ${c.a} → ${c.b}`);
      }
    });
}
