import mqtt, { type MqttClient } from "mqtt";

/** A bare mqtt.js client acting as a device (no agent code): what the broker ACL and protocol see. */
export async function connectDevice(url: string, id: string, password: string): Promise<MqttClient> {
  const client = mqtt.connect(url, {
    clientId: id,
    username: id,
    password,
    protocolVersion: 4,
    reconnectPeriod: 0,
    clean: true,
  });
  await new Promise<void>((resolve, reject) => {
    client.once("connect", () => resolve());
    client.once("error", reject);
  });
  return client;
}

/** Resolves with the first message on `topic`, subscribing first. */
export function nextMessage(client: MqttClient, topic: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const onMessage = (t: string, payload: Buffer) => {
      if (t !== topic) return;
      client.off("message", onMessage);
      resolve(payload);
    };
    client.on("message", onMessage);
    client.subscribe(topic, { qos: 1 }, (err) => {
      if (err) reject(err);
    });
  });
}

export function subscribeGranted(client: MqttClient, topic: string): Promise<number> {
  return new Promise((resolve, reject) => {
    client.subscribe(topic, { qos: 1 }, (err, granted) => {
      // mqtt.js reports a refused filter (SUBACK 0x80) as an error carrying the SUBACK packet.
      const suback = (err as (Error & { packet?: { granted?: number[] } }) | null)?.packet;
      if (err) return suback?.granted ? resolve(suback.granted[0] ?? -1) : reject(err);
      resolve(granted?.[0]?.qos ?? -1);
    });
  });
}

export function publish(client: MqttClient, topic: string, payload: string, retain = false): Promise<void> {
  return new Promise((resolve, reject) => {
    client.publish(topic, payload, { qos: 1, retain }, (err) => (err ? reject(err) : resolve()));
  });
}

export async function eventually<T>(fn: () => Promise<T | undefined>, attempts = 200): Promise<T> {
  for (let i = 0; i < attempts; i++) {
    const v = await fn();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error("condition not reached");
}
