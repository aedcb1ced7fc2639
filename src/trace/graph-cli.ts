export async function runLabGraphCommand(_argv: string[]): Promise<number> { return 0; }
export async function runLabExplainCommand(_argv: string[]): Promise<number> { return 0; }
