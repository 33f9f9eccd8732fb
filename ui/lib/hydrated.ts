import { useEffect, useState } from "react";

// False until React runs in the browser: controls that need JavaScript stay
// disabled until then, so an early click is not lost (or sent as a plain
// form submission).
export function useHydrated(): boolean {
  const [hydrated, setHydrated] = useState(false);
  useEffect(() => setHydrated(true), []);
  return hydrated;
}
