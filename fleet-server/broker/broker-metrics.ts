import { Counter, type Registry } from "prom-client";
import type { Transport } from "./transport.js";

/**
 * `edgefleet_mqtt_unexpected_disconnects_total` (issue 20 §5): the server's broker connection closed
 * without the server asking. A takeover of the server's session is one such close; an alert on any
 * increase catches it (with a broker restart or a network fault, also worth knowing about).
 */
export function registerBrokerMetrics(registry: Registry, transport: Transport): void {
  new Counter({
    name: "edgefleet_mqtt_unexpected_disconnects_total",
    help: "Times the fleet server's MQTT connection was closed by the other side (broker restart, network, session takeover)",
    registers: [registry],
    collect() {
      this.reset();
      this.inc(transport.unexpectedDisconnects());
    },
  });
}
