/**
 * HTTP/2 flow-control windows for both ends. With HTTP/2's default of 64 KiB, a stream moves at most
 * 64 KiB per round trip: 3 MB/s at 20 ms, and a catch-up of 100k messages took 21 s instead of about
 * one. The windows must hold a round trip's worth of data at full speed.
 */
export const STREAM_WINDOW = 16 << 20;
export const CONNECTION_WINDOW = 64 << 20;
