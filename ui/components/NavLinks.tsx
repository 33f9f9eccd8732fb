"use client";
import { usePathname } from "next/navigation";

const PAGES = [
  { href: "/", name: "Nodes" },
  { href: "/access", name: "Access" },
  { href: "/tokens", name: "Tokens" },
  { href: "/federation", name: "Federation" },
  { href: "/events", name: "Events" },
  { href: "/ca", name: "CA" },
  { href: "/controllers", name: "Controllers" },
];

// The console's pages; the current one says so (aria-current), in words
// for a screen reader and in weight on screen, not in colour.
export default function NavLinks() {
  const path = usePathname() ?? "";
  // A node's page belongs to Nodes: "true" (the section), not "page".
  const current = (href: string) => (path === href ? "page" : href === "/" && path.startsWith("/nodes/") ? "true" : undefined);
  return (
    <>
      {PAGES.map((p) => (
        <a key={p.href} href={p.href} aria-current={current(p.href)}>
          {p.name}
        </a>
      ))}
    </>
  );
}
