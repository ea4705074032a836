import { createHash, randomBytes, scrypt, timingSafeEqual } from "node:crypto";

/**
 * Device password hashes. New hashes are `sha256$salt$hash` (base64url): a device password is 32
 * random bytes generated here (`generatePassword`), so a slow KDF adds nothing against a brute
 * force (2^256 guesses either way; the same reasoning as the Mosquitto `$7$` hash with 101
 * iterations) while it cost ~50 ms of CPU per enrollment *and* per first connect: 10,000 devices
 * reconnecting after a server restart spent minutes of both cores in scrypt (issue 14,
 * `npm run bench -- fleet-scale`). Stored `scrypt$N$r$p$salt$hash` hashes from older servers are
 * still verified, so nothing has to be re-enrolled.
 */
const FAST = "sha256";
const SALT_BYTES = 16;

const KEYLEN = 32;

function scryptAsync(password: string, salt: Buffer, n: number, r: number, p: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scrypt(password, salt, KEYLEN, { N: n, r, p, maxmem: 64 * 1024 * 1024 }, (err, key) =>
      err ? reject(err) : resolve(key),
    );
  });
}

const fastDigest = (salt: Buffer, password: string): Buffer =>
  createHash("sha256").update(salt).update(password, "utf8").digest();

export function generatePassword(): string {
  return randomBytes(32).toString("base64url");
}

/** Synchronous and cheap (a few microseconds): bulk enrollment hashes thousands in one request. */
export function hashPassword(password: string): string {
  const salt = randomBytes(SALT_BYTES);
  return `${FAST}$${salt.toString("base64url")}$${fastDigest(salt, password).toString("base64url")}`;
}

/** Constant-time comparison; a malformed stored hash simply fails. */
export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const parts = stored.split("$");
  if (parts[0] === FAST && parts.length === 3) {
    const expected = Buffer.from(parts[2]!, "base64url");
    if (expected.length !== KEYLEN) return false;
    return timingSafeEqual(fastDigest(Buffer.from(parts[1]!, "base64url"), password), expected);
  }
  if (parts.length !== 6 || parts[0] !== "scrypt") return false;
  const [n, r, p] = [Number(parts[1]), Number(parts[2]), Number(parts[3])];
  const salt = Buffer.from(parts[4]!, "base64url");
  const expected = Buffer.from(parts[5]!, "base64url");
  if (!Number.isInteger(n) || !Number.isInteger(r) || !Number.isInteger(p) || expected.length !== KEYLEN) return false;
  const actual = await scryptAsync(password, salt, n, r, p);
  return timingSafeEqual(actual, expected);
}
