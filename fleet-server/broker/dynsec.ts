import { DEVICE_PUBLISHES, DEVICE_SUBSCRIBES, type Topics } from "../../shared/topics.js";

/**
 * Mosquitto's dynamic-security plugin (issue 20 §5), pure part: the roles, ACLs and clients that give
 * Mosquitto the embedded broker's rules (architecture.md §4, `acl.ts`), as commands for
 * `$CONTROL/dynamic-security/v1` and as the plugin's JSON config file (the offline/bootstrap path).
 *
 * Why dynsec rather than `password_file` + `acl_file`: the plugin is changed live (enrollment and
 * revocation take effect at once, `deleteClient` drops the live connection without its will), its
 * usernames are JSON strings (so MAC-style ids with `:` need no escaping, unlike a `user:hash`
 * password file line), a client can be bound to one client id (a device can neither pick another
 * device's id nor take over its session), and `subscribeLiteral` grants exactly one filter string,
 * so a wildcard SUBSCRIBE gets SUBACK 0x80 as on aedes.
 */

export type DynsecAclType =
  | "publishClientSend"
  | "publishClientReceive"
  | "subscribeLiteral"
  | "subscribePattern"
  | "unsubscribeLiteral"
  | "unsubscribePattern";

export interface DynsecAcl {
  acltype: DynsecAclType;
  topic: string;
  allow: boolean;
}

export interface DynsecRole {
  rolename: string;
  acls: DynsecAcl[];
}

/** The role of the fleet server's own client: the whole prefix, and the dynsec control topics. */
export const SERVER_ROLE = "edgefleet-server";
export const CONTROL_TOPIC = "$CONTROL/dynamic-security/v1";
export const CONTROL_RESPONSE_TOPIC = `${CONTROL_TOPIC}/response`;
const DEVICE_ROLE_PREFIX = "edgefleet-device:";

/** Nothing is allowed unless a role says so (a device that matches no ACL can do nothing). */
export const DEFAULT_ACL_ACCESS = {
  publishClientSend: false,
  publishClientReceive: false,
  subscribe: false,
  unsubscribe: true,
} as const;

export function deviceRoleName(deviceId: string): string {
  return `${DEVICE_ROLE_PREFIX}${deviceId}`;
}

/**
 * One role per device with its own exact topics: `publishClientSend` for DEVICE_PUBLISHES,
 * `subscribeLiteral` + `publishClientReceive` for DEVICE_SUBSCRIBES and the trust root. Literal,
 * never pattern: `fleet/v1/d/+/desired` or `#` is a different string, so it is refused.
 */
export function deviceRole(topics: Topics, deviceId: string): DynsecRole {
  const allow = (acltype: DynsecAclType, topic: string): DynsecAcl => ({ acltype, topic, allow: true });
  const reads = [...DEVICE_SUBSCRIBES.map((k) => topics.device(deviceId, k)), topics.trustRoot()];
  return {
    rolename: deviceRoleName(deviceId),
    acls: [
      ...DEVICE_PUBLISHES.map((k) => allow("publishClientSend", topics.device(deviceId, k))),
      ...reads.flatMap((t) => [allow("subscribeLiteral", t), allow("publishClientReceive", t)]),
    ],
  };
}

/** The server reads and writes its prefix (wildcards included) and administers dynsec; never `$SYS`. */
export function serverRole(topics: Topics): DynsecRole {
  const all = `${topics.prefix}/#`;
  return {
    rolename: SERVER_ROLE,
    acls: [
      { acltype: "publishClientSend", topic: all, allow: true },
      { acltype: "publishClientReceive", topic: all, allow: true },
      { acltype: "subscribePattern", topic: all, allow: true },
      { acltype: "unsubscribePattern", topic: all, allow: true },
      { acltype: "publishClientSend", topic: CONTROL_TOPIC, allow: true },
      { acltype: "publishClientReceive", topic: CONTROL_RESPONSE_TOPIC, allow: true },
      { acltype: "subscribeLiteral", topic: CONTROL_RESPONSE_TOPIC, allow: true },
    ],
  };
}

/** A dynsec client entry with a stored hash (the config file carries hashes, never plaintext). */
export interface DynsecClientEntry {
  username: string;
  /** Bound client id: a device must connect with exactly this id (refused otherwise). */
  clientid?: string;
  password: string;
  salt: string;
  iterations: number;
  roles: { rolename: string }[];
}

/**
 * A `mosquitto_passwd` `$7$iterations$salt$hash` line is PBKDF2-HMAC-SHA512 with a base64 salt and
 * digest; dynsec stores the very same three values as separate fields, so a device enrolled once
 * needs no new secret to move between the two.
 */
export function dynsecPasswordFields(hash: string): { password: string; salt: string; iterations: number } {
  const parts = hash.split("$");
  const iterations = Number(parts[2]);
  if (parts.length !== 5 || parts[1] !== "7" || !Number.isInteger(iterations) || iterations < 1) {
    throw new Error("not a $7$ (PBKDF2-SHA512) hash");
  }
  return { password: parts[4]!, salt: parts[3]!, iterations };
}

export interface DynsecConfigInput {
  topics: Topics;
  server: { username: string; hash: string };
  devices: readonly { username: string; hash: string }[];
}

/** The plugin's config file: the server, every non-revoked device and its role, deny by default. */
export function renderDynsecConfig(input: DynsecConfigInput): string {
  const { topics } = input;
  const clients: DynsecClientEntry[] = [
    { username: input.server.username, ...dynsecPasswordFields(input.server.hash), roles: [{ rolename: SERVER_ROLE }] },
    ...input.devices.map((d) => ({
      username: d.username,
      clientid: d.username,
      ...dynsecPasswordFields(d.hash),
      roles: [{ rolename: deviceRoleName(d.username) }],
    })),
  ];
  const roles = [serverRole(topics), ...input.devices.map((d) => deviceRole(topics, d.username))];
  return `${JSON.stringify({ clients, groups: [], roles, defaultACLAccess: DEFAULT_ACL_ACCESS }, null, 2)}\n`;
}

/** Live commands: admit a new device (its role first, so the client never exists without it). */
export function admitCommands(topics: Topics, deviceId: string, password: string): Record<string, unknown>[] {
  const role = deviceRole(topics, deviceId);
  return [
    { command: "createRole", rolename: role.rolename, acls: role.acls },
    {
      command: "createClient",
      username: deviceId,
      clientid: deviceId,
      password,
      roles: [{ rolename: role.rolename }],
    },
  ];
}

/** Live commands: revoke. `deleteClient` also disconnects the client, and its will is not sent. */
export function revokeCommands(deviceId: string): Record<string, unknown>[] {
  return [
    { command: "deleteClient", username: deviceId },
    { command: "deleteRole", rolename: deviceRoleName(deviceId) },
  ];
}
