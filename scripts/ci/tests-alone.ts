import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { defaultSeed, type ListedTest, namePattern, rotate } from "./tests-alone-plan.js";

/**
 * Issue 23, "every test stands alone": runs a rotating sample of tests one by one, each by its name
 * alone (`vitest run <file> -t <name>`), so a test that only passes after the tests before it in its
 * file fails CI. The sample rotates with the seed (the commit, else the date); the seed is printed so
 * a failure can be run again.
 *
 *   node --import tsx scripts/ci/tests-alone.ts [--count N] [--seed S] [--only <file>::<full name>]
 *
 * Env: TESTS_ALONE_COUNT (default 3: about a minute on two cores, e2e tests start real agents;
 * no test starts after BUDGET_MS, so the step stays near two minutes), TESTS_ALONE_SEED. Tests are
 * enumerated by `vitest list` (one file at a time, in the seed's order), never parsed from source. Exit status 1 when a test fails, times out, or its name selects anything but
 * itself; 2 when no test could be listed.
 */
const ROOT = join(import.meta.dirname, "..", "..");
const PER_TEST_TIMEOUT_MS = 300_000;
/** No new test starts after this long, so a sample of slow tests stays near its budget. */
const BUDGET_MS = 60_000;

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

function commit(): string | null {
  try {
    return execFileSync("git", ["rev-parse", "HEAD"], { cwd: ROOT, encoding: "utf8" }).trim() || null;
  } catch {
    return null;
  }
}

const tmp = mkdtempSync(join(tmpdir(), "ef-tests-alone-"));
const vitest = join(ROOT, "node_modules", ".bin", "vitest");

/** `vitest list` as JSON: real collection of the test files (names as vitest itself builds them). */
function list(args: string[]): ListedTest[] {
  const out = join(tmp, "list.json");
  rmSync(out, { force: true });
  execFileSync(vitest, ["list", ...args, `--json=${out}`], { cwd: ROOT, stdio: ["ignore", "ignore", "inherit"] });
  return JSON.parse(readFileSync(out, "utf8")) as ListedTest[];
}

interface Outcome {
  test: ListedTest;
  status: "passed" | "failed" | "skipped";
  why?: string;
  ms: number;
}

/** Runs `test` alone in its own vitest process; its JSON report says what became of it. */
function runAlone(test: ListedTest): Promise<Outcome> {
  const report = join(tmp, "report.json");
  rmSync(report, { force: true });
  const started = Date.now();
  const pattern = namePattern(test);
  const child = spawn(
    vitest,
    ["run", test.file, "-t", pattern, "--reporter=default", "--reporter=json", `--outputFile.json=${report}`],
    { cwd: ROOT, stdio: "inherit", detached: true },
  );
  const timer = setTimeout(() => {
    if (child.pid) process.kill(-child.pid, "SIGKILL");
  }, PER_TEST_TIMEOUT_MS);
  return new Promise((resolve) => {
    child.on("exit", (code, signal) => {
      clearTimeout(timer);
      const ms = Date.now() - started;
      const fail = (why: string): Outcome => ({ test, status: "failed", why, ms });
      if (signal) return resolve(fail(`killed (${signal}) after ${PER_TEST_TIMEOUT_MS / 1000} s`));
      let results: { fullName: string; status: string }[];
      try {
        const r = JSON.parse(readFileSync(report, "utf8")) as {
          testResults: { assertionResults: { fullName: string; status: string }[] }[];
        };
        results = r.testResults.flatMap((t) => t.assertionResults);
      } catch (err) {
        return resolve(fail(`no report (exit ${code}): ${(err as Error).message}`));
      }
      const ran = results.filter((a) => a.status !== "skipped" && a.status !== "pending" && a.status !== "todo");
      const target = results.find((a) => a.fullName === test.name.split(" > ").join(" "));
      if (code !== 0) return resolve(fail(`vitest exited ${code}`));
      if (!target) return resolve(fail("not in the report"));
      if (ran.length > 1) return resolve(fail(`the name selected ${ran.length} tests`));
      if (target.status === "passed") return resolve({ test, status: "passed", ms });
      // Skipped by its own condition (platform, a tool missing): vitest list said the name selects it.
      return resolve({ test, status: "skipped", why: target.status, ms });
    });
  });
}

async function main(): Promise<number> {
  const started = Date.now();
  const count = Number(arg("count") ?? process.env.TESTS_ALONE_COUNT ?? 3);
  const seed = arg("seed") ?? process.env.TESTS_ALONE_SEED ?? defaultSeed(commit(), new Date());
  const only = arg("only");
  console.log(`tests-alone: seed ${seed}, ${only ? "one named test" : `${count} tests`}`);

  const picked: ListedTest[] = [];
  if (only) {
    const [file, name] = only.split("::") as [string, string | undefined];
    const tests = list([join(ROOT, file)]).filter((t) => name === undefined || t.name === name);
    if (tests.length !== 1) {
      console.error(`tests-alone: --only ${only} names ${tests.length} tests`);
      return 2;
    }
    picked.push(tests[0]!);
  } else {
    const files = list(["--filesOnly"]).map((t) => t.file);
    if (files.length === 0) {
      console.error("tests-alone: vitest listed no test files");
      return 2;
    }
    // One test from each of `count` files taken in the seed's order: a file's tests are collected only when needed.
    for (const file of rotate(files, seed, (f) => relative(ROOT, f))) {
      if (picked.length >= count) break;
      const [test] = rotate(list([file]), seed, (t) => t.name);
      if (test) picked.push(test);
    }
  }

  const outcomes: Outcome[] = [];
  for (const test of picked) {
    if (outcomes.length > 0 && Date.now() - started > BUDGET_MS) {
      console.log(`tests-alone: budget spent; not run: ${relative(ROOT, test.file)} > ${test.name}`);
      continue;
    }
    // The name must select this test and no other, or "alone" would mean nothing.
    const selected = list([test.file, "-t", namePattern(test)]);
    if (selected.length !== 1 || selected[0]!.name !== test.name) {
      outcomes.push({ test, status: "failed", why: `its name selects ${selected.length} tests`, ms: 0 });
      continue;
    }
    console.log(`\ntests-alone: ${relative(ROOT, test.file)} > ${test.name}`);
    outcomes.push(await runAlone(test));
  }

  console.log("\ntests-alone: summary");
  for (const o of outcomes) {
    const why = o.why ? ` (${o.why})` : "";
    console.log(
      `  ${o.status.padEnd(7)} ${(o.ms / 1000).toFixed(1).padStart(6)} s  ${relative(ROOT, o.test.file)} > ${o.test.name}${why}`,
    );
  }
  const failed = outcomes.filter((o) => o.status === "failed");
  if (failed.length > 0) {
    console.log(`tests-alone: ${failed.length} failed alone (seed ${seed}); each again:`);
    for (const o of failed) {
      console.log(
        `  node --import tsx scripts/ci/tests-alone.ts --only '${relative(ROOT, o.test.file)}::${o.test.name}'`,
      );
    }
    return 1;
  }
  return 0;
}

main()
  .then((code) => {
    rmSync(tmp, { recursive: true, force: true });
    process.exitCode = code;
  })
  .catch((err: unknown) => {
    rmSync(tmp, { recursive: true, force: true });
    console.error(err);
    process.exitCode = 2;
  });
