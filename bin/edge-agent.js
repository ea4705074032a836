#!/usr/bin/env node
// Entry shim: runs the TypeScript sources through tsx (see docs/operations.md, "Why tsx at runtime").
import { register } from "tsx/esm/api";

register();
await import("../agent/cli.ts");
