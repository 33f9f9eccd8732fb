import ControllersView from "@/components/ControllersView";
import { requirePage } from "@/lib/guard";

export const dynamic = "force-dynamic";

export default async function ControllersPage() {
  await requirePage();
  return <ControllersView />;
}
