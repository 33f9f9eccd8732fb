import EventsView from "@/components/EventsView";
import { filterFromQuery } from "@/lib/events";
import { requirePage } from "@/lib/guard";

export const dynamic = "force-dynamic";

// /events?node=ID&kind=KIND&since=…&until=…&size=N: the filter a link (a
// node's page) or a reload carries.
export default async function EventsPage({ searchParams }: { searchParams: Promise<Record<string, string | string[] | undefined>> }) {
  await requirePage();
  const { filter, size } = filterFromQuery(await searchParams);
  return <EventsView initialFilter={filter} initialSize={size} />;
}
