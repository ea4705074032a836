import { dirname, join } from "node:path";
import type { Plugin } from "esbuild";

/**
 * mqtt.js's transports the agent bundle loads on first use instead of at the first connect
 * (issue 16, docs/benchmarks.md "Agent idle, fourth pass"). mqtt's `connect()` fills its protocol
 * table with `require('./ws')` whatever the URL's scheme, and its tcp and tls builders
 * `require('./socks')` at the top: an agent on mqtt:// or mqtts:// then holds the `ws` package,
 * https and zlib, and the `socks` client with its IP address parser, none of which it uses.
 * Each of those requires is answered here with a stub of the same exports whose functions load
 * the real module when first called: ws:// and wss:// brokers and `MQTTJS_SOCKS_PROXY` still work,
 * through mqtt's own code.
 *
 * `mqttTransportStubs().applied` lists what was stubbed; the build fails if mqtt's layout changed and
 * a stub no longer applies, rather than silently loading the transports again.
 */
const STUBS: Record<string, { importer: RegExp; exports: string[]; esModule: boolean }> = {
  "./ws": {
    importer: /[\\/]mqtt[\\/]build[\\/]lib[\\/]connect[\\/]index\.js$/,
    exports: ["streamBuilder", "browserStreamBuilder"],
    esModule: false,
  },
  "./socks": {
    importer: /[\\/]mqtt[\\/]build[\\/]lib[\\/]connect[\\/](tcp|tls)\.js$/,
    exports: ["default"],
    esModule: true,
  },
};

export const MQTT_TRANSPORT_STUBS = Object.keys(STUBS);

/** The esbuild plugin; `applied` collects the stubbed specifiers of one build. */
export function mqttTransportStubs(): { plugin: Plugin; applied: Set<string> } {
  const applied = new Set<string>();
  const plugin: Plugin = {
    name: "edgefleet-lazy-mqtt-transports",
    setup(build) {
      build.onResolve({ filter: /^\.\/(ws|socks)$/ }, (args) => {
        const stub = STUBS[args.path];
        if (!stub?.importer.test(args.importer)) return undefined;
        applied.add(args.path);
        // The real module, beside its importer: the stub's require() of this absolute path is
        // bundled as its own lazily initialised CommonJS module.
        return { path: join(dirname(args.importer), `${args.path.slice(2)}.js`), namespace: "ef-lazy-transport" };
      });
      build.onLoad({ filter: /.*/, namespace: "ef-lazy-transport" }, (args) => {
        const spec = Object.entries(STUBS).find(([s]) => args.path.endsWith(`${s.slice(1)}.js`))?.[1];
        if (!spec) return { errors: [{ text: `no lazy stub for ${args.path}` }] };
        const lines = [
          `let real; const load = () => (real ??= require(${JSON.stringify(args.path)}));`,
          ...(spec.esModule ? ['Object.defineProperty(exports, "__esModule", { value: true });'] : []),
          ...spec.exports.map((name) => `exports.${name} = (...args) => load().${name}(...args);`),
        ];
        return { contents: lines.join("\n"), loader: "js", resolveDir: dirname(args.path) };
      });
    },
  };
  return { plugin, applied };
}
