import CaView from "@/components/CaView";
import { requirePage } from "@/lib/guard";

export const dynamic = "force-dynamic";

export default async function CaPage() {
  await requirePage();
  return <CaView />;
}
