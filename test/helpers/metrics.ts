/**
 * A sample's value in a server's /metrics (Prometheus text): the number on the line that starts with
 * sample (a name, with its labels when it has any), or 0 when there is none (a counter not yet counted).
 */
export async function metricValue(url: string, sample: string): Promise<number> {
  const text = await (await fetch(new URL("/metrics", url))).text();
  const line = text.split("\n").find((l) => l.startsWith(`${sample} `));
  return line ? Number(line.split(" ").pop()) : 0;
}

/** Calls of method (e.g. "vac.cas.NS/Fetch") the server at url has answered with code. */
export function rpcRequests(url: string, method: string, code = "OK"): Promise<number> {
  return metricValue(url, `remotelog_rpc_requests_total{method="${method}",code="${code}"}`);
}
