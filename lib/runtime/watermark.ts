/** The watermark that means "no more records with any timestamp": end of event time. */
export const MAX_WATERMARK = Number.MAX_SAFE_INTEGER;
/** The watermark before any has been seen. */
export const MIN_WATERMARK = -Number.MAX_SAFE_INTEGER;
