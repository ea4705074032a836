import { readFile } from "node:fs/promises";
import os from "node:os";
import type { DeviceFacts } from "./detect-profile.js";

export interface DeviceFactsSources {
  deviceTreeModelPath?: string;
}

/** Reads the facts `detectProfile` needs. The device-tree file only exists on DT-booted boards (Pi, Jetson, ...). */
export async function readDeviceFacts(sources: DeviceFactsSources = {}): Promise<DeviceFacts> {
  const path = sources.deviceTreeModelPath ?? "/proc/device-tree/model";
  let deviceTreeModel: string | undefined;
  try {
    // The kernel NUL-terminates the string.
    deviceTreeModel = (await readFile(path, "utf8")).replace(/\0+$/, "").trim();
  } catch {
    deviceTreeModel = undefined;
  }
  const facts: DeviceFacts = {
    arch: os.arch(),
    cores: os.cpus().length,
    memoryMB: Math.floor(os.totalmem() / (1024 * 1024)),
  };
  if (deviceTreeModel) facts.deviceTreeModel = deviceTreeModel;
  return facts;
}
