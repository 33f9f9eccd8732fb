import TokensView from "@/components/TokensView";
import { requirePage } from "@/lib/guard";

export const dynamic = "force-dynamic";

export default async function TokensPage() {
  await requirePage();
  return <TokensView />;
}
