import EventsView from "@/components/EventsView";
import { requirePage } from "@/lib/guard";

export const dynamic = "force-dynamic";

export default async function EventsPage({ searchParams }: { searchParams: Promise<{ node?: string; kind?: string }> }) {
  await requirePage();
  const { node, kind } = await searchParams;
  return <EventsView initialNode={typeof node === "string" ? node : ""} initialKind={typeof kind === "string" ? kind : ""} />;
}
