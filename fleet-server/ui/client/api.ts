/**
 * The dashboard's only link to the server: the public HTTP API with the token as a Bearer header.
 * The token lives in sessionStorage (gone with the tab), never in a URL, a cookie or a log line;
 * with no cookie the browser never attaches credentials by itself, so no other site can make a
 * request on the operator's behalf (CSRF-safe by construction, docs/security.md "Dashboard").
 */
const KEY = "edgefleet.token";

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export const session = {
  token: (): string | null => sessionStorage.getItem(KEY),
  set: (token: string) => sessionStorage.setItem(KEY, token),
  clear: () => sessionStorage.removeItem(KEY),
};

let onUnauthorized: () => void = () => {};
export function whenUnauthorized(f: () => void): void {
  onUnauthorized = f;
}

export async function api<T>(path: string, init: { method?: "GET" | "POST"; token?: string } = {}): Promise<T> {
  const token = init.token ?? session.token();
  const res = await fetch(path, {
    method: init.method ?? "GET",
    headers: token ? { authorization: `Bearer ${token}` } : {},
    cache: "no-store",
    credentials: "omit",
  });
  const body = (await res.json().catch(() => null)) as { error?: { code: string; message: string } } | null;
  if (!res.ok) {
    if (res.status === 401 && init.token === undefined) onUnauthorized();
    throw new ApiError(res.status, body?.error?.code ?? "HTTP", body?.error?.message ?? `HTTP ${res.status}`);
  }
  return body as T;
}

export interface StreamEvent {
  type: string;
  data: unknown;
}

/**
 * Follows `GET /v1/events` with fetch streaming (EventSource cannot send an Authorization header),
 * parsing the SSE framing itself; reconnects after the server's `retry` with `since` = the last id.
 */
export function followEvents(onEvent: (e: StreamEvent) => void, onState: (live: boolean) => void): () => void {
  let lastId = 0;
  let retryMs = 2000;
  let stopped = false;
  let controller: AbortController | null = null;
  const run = async () => {
    while (!stopped) {
      controller = new AbortController();
      try {
        const token = session.token();
        if (!token) return;
        const res = await fetch(`/v1/events?since=${lastId}`, {
          headers: { authorization: `Bearer ${token}`, accept: "text/event-stream" },
          signal: controller.signal,
          credentials: "omit",
        });
        if (res.status === 401) return onUnauthorized();
        if (!res.ok || !res.body) throw new Error(`events: HTTP ${res.status}`);
        onState(true);
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value;
          let cut = buf.indexOf("\n\n");
          while (cut >= 0) {
            const block = buf.slice(0, cut);
            buf = buf.slice(cut + 2);
            cut = buf.indexOf("\n\n");
            let type = "message";
            let data = "";
            for (const line of block.split("\n")) {
              if (line.startsWith("event: ")) type = line.slice(7);
              else if (line.startsWith("data: ")) data += line.slice(6);
              else if (line.startsWith("id: ")) lastId = Number(line.slice(4));
              else if (line.startsWith("retry: ")) retryMs = Number(line.slice(7)) || retryMs;
            }
            if (data) onEvent({ type, data: JSON.parse(data) });
          }
        }
      } catch {
        // Network gone or aborted: retry below unless stopped.
      }
      onState(false);
      if (!stopped) await new Promise((r) => setTimeout(r, retryMs));
    }
  };
  void run();
  return () => {
    stopped = true;
    controller?.abort();
  };
}
