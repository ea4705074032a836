import { writeFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { profileJsonSchemaText } from "./profile-json-schema.js";

/** `node --import tsx agent/profile/write-profile-schema.ts` regenerates device-profiles/schema.json. */
const target = fileURLToPath(new URL("../../device-profiles/schema.json", import.meta.url));
await writeFile(target, profileJsonSchemaText());
process.stdout.write(`wrote ${target}\n`);
