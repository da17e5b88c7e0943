/**
 * Input handling: decode whatever the caller passes into pixels, with clear errors, bounded
 * memory and EXIF orientation; then turn pixels into the model's input tensor inside tf.tidy.
 *
 * Decoding is engine-independent (ImageData out); only `toInputTensor` touches TF.js, and it takes
 * `tf` as an argument so this module loads in Node for unit tests and in a worker alike.
 *
 * Huge images: the header is read first (PNG, JPEG, GIF, WebP, BMP) and, when the image has more
 * than `maxPixels`, createImageBitmap is asked to downscale *while decoding*
 * (resizeWidth + resizeQuality "high"), so a 50-megapixel photo never becomes a 200 MB RGBA buffer.
 * @module preprocess
 */

import { InputError } from './errors.js';

/** Default decode cap: plenty for any classifier input (they are <= 512 px a side). */
export const DEFAULT_MAX_PIXELS = 4 * 1024 * 1024;

/** How many leading bytes are read to sniff the type and find the dimensions. */
const HEADER_BYTES = 512 * 1024;

/**
 * Image type from magic bytes.
 * @param {Uint8Array} b
 * @returns {'png' | 'jpeg' | 'gif' | 'webp' | 'bmp' | 'avif' | 'ico' | null}
 */
export function sniffImageType(b) {
  const at = (i, ...vals) => vals.every((v, k) => b[i + k] === v);
  const ascii = (i, s) => [...s].every((ch, k) => b[i + k] === ch.charCodeAt(0));
  if (at(0, 0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a)) return 'png';
  if (at(0, 0xff, 0xd8, 0xff)) return 'jpeg';
  if (ascii(0, 'GIF87a') || ascii(0, 'GIF89a')) return 'gif';
  if (ascii(0, 'RIFF') && ascii(8, 'WEBP')) return 'webp';
  if (ascii(0, 'BM') && b.length > 26) return 'bmp';
  if (ascii(4, 'ftyp') && (ascii(8, 'avif') || ascii(8, 'avis'))) return 'avif';
  if (at(0, 0, 0, 1, 0)) return 'ico';
  return null;
}

/**
 * Natural (pre-orientation) width/height read from the header, or null when not found in the
 * bytes given (e.g. a JPEG whose frame header lies past the first chunk).
 * @param {Uint8Array} b
 * @param {string | null} [type]
 * @returns {{width: number, height: number} | null}
 */
export function imageSize(b, type = sniffImageType(b)) {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const ok = (w, h) => (w > 0 && h > 0 ? { width: w, height: h } : null);
  try {
    switch (type) {
      case 'png':
        return ok(dv.getUint32(16), dv.getUint32(20));
      case 'gif':
        return ok(dv.getUint16(6, true), dv.getUint16(8, true));
      case 'bmp':
        return ok(Math.abs(dv.getInt32(18, true)), Math.abs(dv.getInt32(22, true)));
      case 'webp': {
        const chunk = String.fromCharCode(b[12], b[13], b[14], b[15]);
        if (chunk === 'VP8X') return ok(1 + (b[24] | (b[25] << 8) | (b[26] << 16)), 1 + (b[27] | (b[28] << 8) | (b[29] << 16)));
        if (chunk === 'VP8L') {
          const bits = dv.getUint32(21, true);
          return ok((bits & 0x3fff) + 1, ((bits >> 14) & 0x3fff) + 1);
        }
        if (chunk === 'VP8 ') return ok(dv.getUint16(26, true) & 0x3fff, dv.getUint16(28, true) & 0x3fff);
        return null;
      }
      case 'jpeg': {
        let i = 2;
        while (i + 9 < b.length) {
          if (b[i] !== 0xff) return null;
          const marker = b[i + 1];
          if (marker === 0xff) { i += 1; continue; }
          if (marker === 0xd8 || (marker >= 0xd0 && marker <= 0xd7) || marker === 0x01) { i += 2; continue; }
          const len = dv.getUint16(i + 2);
          // SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC) carry the frame size.
          if (marker >= 0xc0 && marker <= 0xcf && ![0xc4, 0xc8, 0xcc].includes(marker)) {
            return ok(dv.getUint16(i + 7), dv.getUint16(i + 5));
          }
          if (marker === 0xda) return null;
          i += 2 + len;
        }
        return null;
      }
      default:
        return null;
    }
  } catch {
    return null;
  }
}

/**
 * createImageBitmap options for a natural size: orientation from EXIF, and a downscale on decode
 * when the image has more than `maxPixels`.
 *
 * Only `resizeWidth` is given (the height follows the aspect ratio). The header's size is before
 * EXIF rotation, and whether the browser applies the resize before or after rotating is not
 * something to rely on, so the target is the scaled *shorter* side: whichever side ends up as
 * width, the result has at most `maxPixels` pixels.
 * @param {{width: number, height: number} | null} size
 * @param {number} maxPixels
 * @returns {ImageBitmapOptions}
 */
export function decodeOptions(size, maxPixels = DEFAULT_MAX_PIXELS) {
  const opts = { imageOrientation: 'from-image', premultiplyAlpha: 'none', colorSpaceConversion: 'default' };
  if (size && size.width * size.height > maxPixels) {
    const scale = Math.sqrt(maxPixels / (size.width * size.height));
    opts.resizeWidth = Math.max(1, Math.floor(Math.min(size.width, size.height) * scale));
    opts.resizeQuality = 'high';
  }
  return opts;
}

/** @param {any} x @returns {boolean} */
const isBlob = (x) => typeof Blob !== 'undefined' && x instanceof Blob;
/** @param {any} x */
const isImageData = (x) => typeof ImageData !== 'undefined' && x instanceof ImageData;
/** @param {any} x */
const isBitmap = (x) => typeof ImageBitmap !== 'undefined' && x instanceof ImageBitmap;

/**
 * Name for messages: a File's name, else the kind of input.
 * @param {any} input
 */
export function describeInput(input) {
  if (input && typeof input.name === 'string' && input.name) return input.name;
  return (input && input.constructor && input.constructor.name) || typeof input;
}

/**
 * Decode any supported input to ImageData (RGBA, oriented, at most ~maxPixels).
 * @param {Blob | File | ImageBitmap | ImageData | HTMLImageElement | HTMLCanvasElement | OffscreenCanvas} input
 * @param {{maxPixels?: number}} [opts]
 * @returns {Promise<ImageData>}
 */
export async function decode(input, opts = {}) {
  const maxPixels = opts.maxPixels || DEFAULT_MAX_PIXELS;
  if (input == null) throw new InputError('no input given: pass a File, Blob, ImageBitmap, ImageData or <img>', 'bad-input');
  if (isImageData(input)) return input;
  if (isBitmap(input)) return bitmapToImageData(input, false);
  if (isBlob(input)) return bitmapToImageData(await decodeBlob(input, maxPixels), true);
  if (typeof HTMLImageElement !== 'undefined' && input instanceof HTMLImageElement) {
    try {
      if (!input.complete || !input.naturalWidth) await input.decode();
    } catch {
      throw new InputError(`${input.currentSrc || input.src || 'image'}: the <img> could not be decoded`, 'corrupt');
    }
    if (!input.naturalWidth) throw new InputError('the <img> has no pixels (not loaded?)', 'corrupt');
    const size = { width: input.naturalWidth, height: input.naturalHeight };
    return bitmapToImageData(await createImageBitmap(input, decodeOptions(size, maxPixels)), true);
  }
  if (typeof input.getContext === 'function' || (typeof VideoFrame !== 'undefined' && input instanceof VideoFrame)) {
    return bitmapToImageData(await createImageBitmap(input), true);
  }
  throw new InputError(`unsupported input ${describeInput(input)}: pass a File, Blob, ImageBitmap, ImageData or <img>`, 'bad-input');
}

/**
 * Decode a Blob/File with a clear error for each way it can be bad.
 * @param {Blob} blob
 * @param {number} maxPixels
 * @returns {Promise<ImageBitmap>}
 */
export async function decodeBlob(blob, maxPixels = DEFAULT_MAX_PIXELS) {
  const name = describeInput(blob);
  if (blob.size === 0) throw new InputError(`${name}: the file is empty (0 bytes)`, 'empty');
  const head = new Uint8Array(await blob.slice(0, HEADER_BYTES).arrayBuffer());
  const type = sniffImageType(head);
  if (!type) {
    const hint = looksLikeText(head) ? 'it looks like text' : `its type is ${blob.type || 'unknown'}`;
    throw new InputError(`${name}: not an image (${hint}); use PNG, JPEG, GIF, WebP or BMP`, 'not-image');
  }
  try {
    return await createImageBitmap(blob, decodeOptions(imageSize(head, type), maxPixels));
  } catch (err) {
    throw new InputError(`${name}: the ${type.toUpperCase()} file could not be decoded — it is truncated or corrupt`, 'corrupt',
      { type, cause: String(err && err.message ? err.message : err) });
  }
}

/**
 * Heuristic: printable UTF-8/ASCII in the first bytes.
 * @param {Uint8Array} b
 */
export function looksLikeText(b) {
  const n = Math.min(b.length, 512);
  if (!n) return false;
  let printable = 0;
  for (let i = 0; i < n; i += 1) {
    const c = b[i];
    if (c === 9 || c === 10 || c === 13 || (c >= 32 && c < 127) || c >= 0xc2) printable += 1;
  }
  return printable / n > 0.95;
}

/**
 * Pixels of a bitmap via an OffscreenCanvas (present in pages and workers).
 * @param {ImageBitmap} bitmap
 * @param {boolean} close release the bitmap afterwards (we created it)
 * @returns {ImageData}
 */
export function bitmapToImageData(bitmap, close) {
  try {
    const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
    const ctx = canvas.getContext('2d', { willReadFrequently: true });
    ctx.drawImage(bitmap, 0, 0);
    return ctx.getImageData(0, 0, bitmap.width, bitmap.height);
  } finally {
    if (close) bitmap.close();
  }
}

/**
 * Linear map from [0, 255] pixels to the model's value_range: x * scale + offset.
 * @param {number[] | undefined} range manifest input.value_range
 * @returns {{scale: number, offset: number}}
 */
export function rangeTransform(range) {
  const [lo, hi] = range && range.length === 2 ? range : [0, 255];
  return { scale: (hi - lo) / 255, offset: lo };
}

/**
 * The model input for one or more images: [n, height, width, channels] float32, built inside
 * tf.tidy so every intermediate (pixels, resized, grayscale) is freed; only the returned batch
 * survives and the caller disposes it.
 * @param {any} tf the TF.js namespace
 * @param {ImageData[]} images
 * @param {{height: number, width: number, channels?: number, value_range?: number[]}} spec
 * @returns {any} a tf.Tensor4D
 */
export function toInputTensor(tf, images, spec) {
  const { scale, offset } = rangeTransform(spec.value_range);
  const channels = spec.channels || 3;
  return tf.tidy(() => {
    const each = images.map((img) => {
      let x = tf.browser.fromPixels(img, 3).toFloat();
      if (x.shape[0] !== spec.height || x.shape[1] !== spec.width) {
        x = tf.image.resizeBilinear(x, [spec.height, spec.width]);
      }
      if (channels === 1) {
        // ITU-R BT.601 luma, what PIL's convert("L") and tf.image.rgb_to_grayscale use.
        x = x.mul(tf.tensor1d([0.299, 0.587, 0.114])).sum(-1, true);
      }
      if (scale !== 1 || offset !== 0) x = x.mul(scale).add(offset);
      return x;
    });
    return each.length === 1 ? each[0].expandDims(0) : tf.stack(each);
  });
}

/**
 * Pixels to a flat float32 input (H x W x C, batch of one) without TF.js, for engines that take
 * plain arrays (LiteRT.js). Same steps and order as `toInputTensor`, so both engines see the same
 * numbers: RGB, bilinear resize as tf.image.resizeBilinear (alignCorners false, halfPixelCenters
 * false), BT.601 luma when the model has one channel, then the value-range transform.
 * @param {{width: number, height: number, data: ArrayLike<number>}} img RGBA pixels (ImageData)
 * @param {{height: number, width: number, channels?: number, value_range?: number[]}} spec
 * @param {Float32Array} [out] reused buffer of H*W*C floats
 * @returns {Float32Array}
 */
export function toInputArray(img, spec, out) {
  const { scale, offset } = rangeTransform(spec.value_range);
  const channels = spec.channels || 3;
  const H = spec.height;
  const W = spec.width;
  const result = out && out.length === H * W * channels ? out : new Float32Array(H * W * channels);
  const src = img.data;
  if (img.width === W && img.height === H) return copyPixels(src, H * W, channels, scale, offset, result);
  const fy = img.height / H;
  const fx = img.width / W;
  const rgb = [0, 0, 0];
  for (let y = 0; y < H; y += 1) {
    const sy = y * fy;
    const y0 = Math.floor(sy);
    const y1 = Math.min(y0 + 1, img.height - 1);
    const dy = sy - y0;
    for (let x = 0; x < W; x += 1) {
      const sx = x * fx;
      const x0 = Math.floor(sx);
      const x1 = Math.min(x0 + 1, img.width - 1);
      const dx = sx - x0;
      for (let c = 0; c < 3; c += 1) {
        const tl = src[(y0 * img.width + x0) * 4 + c];
        const tr = src[(y0 * img.width + x1) * 4 + c];
        const bl = src[(y1 * img.width + x0) * 4 + c];
        const br = src[(y1 * img.width + x1) * 4 + c];
        const top = tl + (tr - tl) * dx;
        const bottom = bl + (br - bl) * dx;
        rgb[c] = top + (bottom - top) * dy;
      }
      const at = (y * W + x) * channels;
      if (channels === 1) {
        result[at] = (rgb[0] * 0.299 + rgb[1] * 0.587 + rgb[2] * 0.114) * scale + offset;
      } else {
        for (let c = 0; c < 3; c += 1) result[at + c] = rgb[c] * scale + offset;
      }
    }
  }
  return result;
}

/**
 * Same-size fast path of toInputArray: RGBA to RGB (or luma) floats, no interpolation.
 * @param {ArrayLike<number>} src RGBA @param {number} n pixels @param {number} channels
 * @param {number} scale @param {number} offset @param {Float32Array} out
 */
function copyPixels(src, n, channels, scale, offset, out) {
  if (channels === 1) {
    for (let p = 0; p < n; p += 1) {
      const i = p * 4;
      out[p] = (src[i] * 0.299 + src[i + 1] * 0.587 + src[i + 2] * 0.114) * scale + offset;
    }
  } else {
    for (let p = 0, j = 0; p < n; p += 1, j += 3) {
      const i = p * 4;
      out[j] = src[i] * scale + offset;
      out[j + 1] = src[i + 1] * scale + offset;
      out[j + 2] = src[i + 2] * scale + offset;
    }
  }
  return out;
}
