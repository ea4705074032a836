import type { Clock } from "../../shared/clock.js";
import type { Logger } from "../../shared/logger.js";
import { VariantSchema } from "../../shared/schemas/common.js";
import {
  DeviceEventSchema,
  type ProbationReport,
  type ReportedState,
  ReportedStateSchema,
} from "../../shared/schemas/device-state.js";
import type { DeviceRepo } from "../store/device-repo.js";
import type { ModelRepo } from "../store/model-repo.js";
import type { VariantMeasurementRepo } from "../store/variant-measurement-repo.js";
import { measurementsFromReport, shouldReplaceMeasurement, type VariantOf } from "./variant-measurements.js";

export interface VariantRecorderDeps {
  log: Logger;
  clock: Clock;
  devices: DeviceRepo;
  models: ModelRepo;
  measurements: VariantMeasurementRepo;
}

function parseJson(payload: Buffer): unknown {
  try {
    return JSON.parse(payload.toString("utf8"));
  } catch {
    return undefined;
  }
}

/**
 * Records what devices measured per variant from their probation reports (the `reported` document
 * and `probation.verdict` events). Runs beside the device service on the same MQTT messages; it
 * validates on its own and drops silently what the device service already logs as invalid.
 */
export function createVariantRecorder(deps: VariantRecorderDeps) {
  const { log, clock, devices, models, measurements } = deps;

  /** Registry first (uploads and re-releases); else what the device itself says the bundle is. */
  function variantResolver(reported: ReportedState | null): VariantOf {
    return (sha256) => {
      const known = models.anyBundle(sha256)?.variant;
      const fromDevice = reported?.models
        .flatMap((m) => [m.committed, m.candidate])
        .find((r) => r?.sha256 === sha256)?.variant;
      const v = VariantSchema.safeParse(known ?? fromDevice);
      return v.success ? v.data : null;
    };
  }

  function record(deviceId: string, model: string, report: ProbationReport, variantOf: VariantOf): void {
    const at = new Date(clock.now()).toISOString();
    for (const m of measurementsFromReport({ deviceId, model, report, variantOf, at })) {
      if (shouldReplaceMeasurement(measurements.get(deviceId, model, m.variant), m)) measurements.upsert(m);
    }
  }

  function guarded(what: string, deviceId: string, fn: () => void): void {
    try {
      fn();
    } catch (err) {
      // A device's report must never break the MQTT handler chain.
      log.warn({ err, deviceId }, `recording variant measurements from ${what} failed`);
    }
  }

  return {
    onReported(deviceId: string, payload: Buffer): void {
      const parsed = ReportedStateSchema.safeParse(parseJson(payload));
      if (!parsed.success || parsed.data.deviceId !== deviceId || !devices.get(deviceId)) return;
      const reported = parsed.data;
      guarded("reported state", deviceId, () => {
        for (const m of reported.models) {
          if (m.probation) record(deviceId, m.model, m.probation, variantResolver(reported));
        }
      });
    },
    onEvent(deviceId: string, payload: Buffer): void {
      const parsed = DeviceEventSchema.safeParse(parseJson(payload));
      if (!parsed.success || parsed.data.deviceId !== deviceId || parsed.data.type !== "probation.verdict") return;
      const ev = parsed.data;
      const device = devices.get(deviceId);
      if (!device) return;
      guarded("probation verdict", deviceId, () =>
        record(deviceId, ev.model, ev.report, variantResolver(device.reported)),
      );
    },
  };
}
export type VariantRecorder = ReturnType<typeof createVariantRecorder>;
