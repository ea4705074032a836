import { Counter, Gauge, Registry } from "prom-client";
import type { BrokerLink } from "../health/broker-link.js";

/**
 * The broker link's Prometheus metrics (issue 20 §4), in a registry of their own so `GET /metrics`
 * appends them to the telemetry registry's text without the two sharing state.
 */
export function createBrokerMetrics(link: BrokerLink): { text(): Promise<string> } {
  const registry = new Registry();
  new Gauge({
    name: "edgefleet_broker_connected",
    help: "1 while the fleet server is connected to its MQTT broker, 0 while it is not",
    registers: [registry],
    collect() {
      this.set(link.state().connected ? 1 : 0);
    },
  });
  const disconnects = new Counter({
    name: "edgefleet_broker_disconnects_total",
    help: "Times the fleet server lost its MQTT broker connection (each loss once, not each retry)",
    registers: [registry],
  });
  new Gauge({
    name: "edgefleet_broker_link_changed_timestamp_seconds",
    help: "When the broker link last came up or went down (Unix time)",
    registers: [registry],
    collect() {
      this.set(link.state().since / 1000);
    },
  });
  link.onChange((s) => {
    if (!s.connected) disconnects.inc();
  });
  return { text: () => registry.metrics() };
}
