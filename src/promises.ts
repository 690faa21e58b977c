/**
 * Waiting on work that runs side by side. Pure: used by activities and by
 * workflow code alike.
 */

/**
 * Waits for every one, then throws the first failure: nothing is left running
 * behind a thrown error. Keeps the types of a tuple (`[Promise<A>, Promise<B>]`
 * gives `[A, B]`) as of an array.
 */
export async function allSettledOrFirstError<T extends readonly unknown[]>(work: [...{ [K in keyof T]: Promise<T[K]> }]): Promise<T> {
  const settled = await Promise.allSettled(work);
  const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
  return settled.map((r) => (r as PromiseFulfilledResult<unknown>).value) as unknown as T;
}
