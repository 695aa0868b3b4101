/**
 * Runs async tasks one at a time, in call order. A task that throws does not block the ones after it.
 * Small on purpose: the stores only need "no two of these at once" within one process.
 */
export class Mutex {
  private tail: Promise<void> = Promise.resolve();
  private queued = 0;

  /** Whether a task is running or waiting. */
  get busy(): boolean {
    return this.queued > 0;
  }

  async run<T>(task: () => Promise<T>): Promise<T> {
    const previous = this.tail;
    let release!: () => void;
    this.tail = new Promise<void>((resolve) => (release = resolve));
    this.queued++;
    try {
      await previous;
      return await task();
    } finally {
      this.queued--;
      release();
    }
  }
}

/** One Mutex per key, dropped when idle so that a store touching many keys does not grow without bound. */
export class KeyedMutex {
  private readonly mutexes = new Map<string, Mutex>();

  async run<T>(key: string, task: () => Promise<T>): Promise<T> {
    let mutex = this.mutexes.get(key);
    if (!mutex) {
      mutex = new Mutex();
      this.mutexes.set(key, mutex);
    }
    try {
      return await mutex.run(task);
    } finally {
      if (!mutex.busy) this.mutexes.delete(key);
    }
  }

  /** Resolves once every task queued so far has finished. */
  async idle(): Promise<void> {
    await Promise.all([...this.mutexes.values()].map((mutex) => mutex.run(async () => {})));
  }
}
