import cron from "node-cron";
import type { MaintenanceWindow } from "./definition.js";

const MINUTE = 60_000;

interface LocalTime {
  minute: number;
  hour: number;
  day: number;
  month: number;
  weekday: number;
  lastDayOfMonth: number;
}

const WEEKDAYS: Record<string, number> = { Sun: 0, Mon: 1, Tue: 2, Wed: 3, Thu: 4, Fri: 5, Sat: 6 };

function localTime(fmt: Intl.DateTimeFormat, at: number): LocalTime {
  const parts: Record<string, string> = {};
  for (const p of fmt.formatToParts(new Date(at))) parts[p.type] = p.value;
  const year = Number(parts.year);
  const month = Number(parts.month);
  return {
    minute: Number(parts.minute),
    hour: Number(parts.hour) % 24,
    day: Number(parts.day),
    month,
    weekday: WEEKDAYS[parts.weekday ?? ""] ?? -1,
    // Day 0 of the next month is the last day of this one (calendar arithmetic, zone-free).
    lastDayOfMonth: new Date(Date.UTC(year, month, 0)).getUTCDate(),
  };
}

/**
 * Pure: is `now` inside a maintenance window, i.e. did the cron expression fire (at minute
 * resolution, in the window's time zone) within the last `durationMinutes`? node-cron parses
 * and validates the expression; the match itself is done here so no timer or task is created
 * (node-cron tasks register themselves globally and run timers).
 */
export function isWindowOpen(window: MaintenanceWindow, now: number): boolean {
  const fields = cron.parse(window.cron);
  const fmt = new Intl.DateTimeFormat("en-US", {
    timeZone: window.timeZone,
    hourCycle: "h23",
    year: "numeric",
    month: "numeric",
    day: "numeric",
    hour: "numeric",
    minute: "numeric",
    weekday: "short",
  });
  const minutes = new Set(fields.minute);
  const hours = new Set(fields.hour);
  const months = new Set(fields.month);
  const weekdays = new Set(fields.dayOfWeek.map((d) => (d === 7 ? 0 : d)));
  const matchesDay = (t: LocalTime) =>
    fields.dayOfMonth.some((d) => d === t.day || (d === "L" && t.day === t.lastDayOfMonth)) && weekdays.has(t.weekday);
  const start = Math.floor(now / MINUTE) * MINUTE;
  for (let i = 0; i < window.durationMinutes; i++) {
    const t = localTime(fmt, start - i * MINUTE);
    if (minutes.has(t.minute) && hours.has(t.hour) && months.has(t.month) && matchesDay(t)) return true;
  }
  return false;
}
