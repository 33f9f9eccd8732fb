import { redirect } from "next/navigation";
import NodesView from "@/components/NodesView";
import { configOrLog, pollMs, proxyLog, timeoutMs } from "@/lib/admin-config";
import type { Node } from "@/lib/nodes";
import { CONFIG_ERROR, proxyAdmin } from "@/lib/proxy";
import { currentSession } from "@/lib/request";

export const dynamic = "force-dynamic";

export default async function NodesPage() {
  if ((await currentSession()) === null) redirect("/login");
  const cfg = configOrLog();
  let nodes: Node[] = [];
  let error: { status: number; text: string } | null = null;
  if (cfg === null) {
    error = { status: 500, text: CONFIG_ERROR };
  } else {
    // The first render carries the data; the browser then polls.
    const res = await proxyAdmin({ method: "GET", segments: ["nodes"], search: "" }, cfg, {
      timeoutMs: timeoutMs(),
      log: proxyLog,
    });
    const body = JSON.parse(res.body) as { nodes?: Node[]; error?: string };
    if (res.status === 200) nodes = body.nodes ?? [];
    else error = { status: res.status, text: body.error ?? "" };
  }
  return (
    <NodesView
      initialNodes={nodes}
      initialError={error}
      initialNow={Math.floor(Date.now() / 1000)}
      pollMs={pollMs()}
    />
  );
}
