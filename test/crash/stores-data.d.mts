export declare function message(round: number, i: number): Uint8Array;
export declare function block(round: number, i: number): Uint8Array;
