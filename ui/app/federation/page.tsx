import FederationView from "@/components/FederationView";
import { pollMs } from "@/lib/admin-config";
import { requirePage } from "@/lib/guard";

export const dynamic = "force-dynamic";

export default async function FederationPage() {
  await requirePage();
  return <FederationView pollMs={pollMs()} />;
}
