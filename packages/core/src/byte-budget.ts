/**
 * A budget of bytes shared by concurrent work, handed out first come, first served: an object store holds at
 * most `limit` bytes of upload buffers across all of its puts, and a put that would overdraw the budget waits
 * (its body is not read meanwhile) until earlier ones give theirs back. A request for more than the whole budget
 * waits until nothing else holds any, then runs alone.
 */
export class ByteBudget {
  readonly limit: number;
  #free: number;
  readonly #waiting: { bytes: number; start(): void }[] = [];

  constructor(limit: number) {
    if (!Number.isSafeInteger(limit) || limit < 1) {
      throw new RangeError(`A byte budget must be a positive whole number of bytes, got ${limit}.`);
    }
    this.limit = limit;
    this.#free = limit;
  }

  /** Bytes not handed out. */
  get free(): number {
    return this.#free;
  }

  /**
   * Takes `bytes` (at most the whole budget) once they are free and every earlier request has been served;
   * resolves to the function that gives them back (calling it again does nothing).
   */
  async take(bytes: number): Promise<() => void> {
    const need = Math.min(Math.max(0, Math.ceil(bytes)), this.limit);
    if (this.#waiting.length > 0 || need > this.#free) {
      await new Promise<void>((start) => this.#waiting.push({ bytes: need, start }));
    } else {
      this.#free -= need;
    }
    let given = false;
    return () => {
      if (given) return;
      given = true;
      this.#free += need;
      this.#serve();
    };
  }

  /** Starts waiting requests in order, as long as the first of them fits. */
  #serve(): void {
    while (this.#waiting.length > 0 && this.#waiting[0]!.bytes <= this.#free) {
      const next = this.#waiting.shift()!;
      this.#free -= next.bytes;
      next.start();
    }
  }
}
