import AccessView from "@/components/AccessView";
import { requirePage } from "@/lib/guard";

export const dynamic = "force-dynamic";

export default async function AccessPage() {
  await requirePage();
  return <AccessView />;
}
