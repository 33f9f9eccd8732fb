import NodeDetail from "@/components/NodeDetail";
import { pollMs } from "@/lib/admin-config";
import { requirePage } from "@/lib/guard";

export const dynamic = "force-dynamic";

export default async function NodePage({ params }: { params: Promise<{ id: string }> }) {
  await requirePage();
  const { id } = await params;
  return <NodeDetail id={id} pollMs={pollMs()} />;
}
