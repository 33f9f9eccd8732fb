import { useCallback, useEffect, useRef } from "react";

// Polls with a delay after each answer, so a slow controller delays the
// next call instead of stacking them; `poke` asks again at once. An answer
// that arrives after the selection changed is dropped (live() is false).
export function usePoll(fn: (live: () => boolean) => Promise<void>, everyMs: number, deps: unknown[]): () => void {
  const pokeRef = useRef<() => void>(() => {});
  useEffect(() => {
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const tick = async () => {
      clearTimeout(timer);
      await fn(() => !stopped);
      if (!stopped) timer = setTimeout(tick, everyMs);
    };
    pokeRef.current = () => void tick();
    timer = setTimeout(tick, everyMs);
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, deps);
  return useCallback(() => pokeRef.current(), []);
}
