import { redirect } from "next/navigation";
import NodesView from "@/components/NodesView";
import { configOrLog, pollMs, proxyLog, timeoutMs } from "@/lib/admin-config";
import { PAGE_SIZE, type NodePage } from "@/lib/nodes";
import { CONFIG_ERROR, proxyAdmin } from "@/lib/proxy";
import { currentSession } from "@/lib/request";

export const dynamic = "force-dynamic";

export default async function NodesPage() {
  if ((await currentSession()) === null) redirect("/login");
  const cfg = configOrLog();
  let page: NodePage | null = null;
  let error: { status: number; text: string } | null = null;
  if (cfg === null) {
    error = { status: 500, text: CONFIG_ERROR };
  } else {
    // The first render carries the first page; the browser then polls.
    const res = await proxyAdmin({ method: "GET", segments: ["nodes"], search: `?offset=0&limit=${PAGE_SIZE}` }, cfg, {
      timeoutMs: timeoutMs(),
      log: proxyLog,
    });
    const body = JSON.parse(res.body) as NodePage & { error?: string };
    if (res.status === 200) page = body;
    else error = { status: res.status, text: body.error ?? "" };
  }
  return (
    <NodesView
      initialPage={page}
      initialError={error}
      initialNow={Math.floor(Date.now() / 1000)}
      pollMs={pollMs()}
    />
  );
}
