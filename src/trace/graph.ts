export async function renderLabGraph(..._a: unknown[]): Promise<string> { return ""; }
