/**
 * Layers that tfjs-layers 4.22 lacks or computes differently from Keras 3, registered with
 * `tf.serialization.registerClass` so `tf.loadLayersModel` can build models that use them.
 *
 * Python writes them (browserml.tfjs.rewrite) in place of Keras layers TF.js cannot run as Keras
 * does; every model using them is compared with Keras in real TF.js before it is offered.
 *
 * - BrowserMLResize: Keras' `Resizing` and bilinear `UpSampling2D`, i.e. TensorFlow's
 *   `tf.image.resize` (half-pixel centres, no antialias), as TF.js's resizeBilinear /
 *   resizeNearestNeighbor with halfPixelCenters. tfjs-layers' own Resizing fails at predict and
 *   its UpSampling2D ignores `interpolation: 'bilinear'`.
 */

const registered = new WeakSet();

/**
 * Register the BrowserML layer classes on a TF.js instance (idempotent).
 * @param {any} tf the TF.js namespace (`globalThis.tf` from the UMD bundle)
 */
export function registerBrowserMLLayers(tf) {
  if (!tf || registered.has(tf)) return;
  registered.add(tf);

  class BrowserMLResize extends tf.layers.Layer {
    constructor(config) {
      super(config);
      this.height = config.height;
      this.width = config.width;
      this.interpolation = config.interpolation || 'bilinear';
      if (!['bilinear', 'nearest'].includes(this.interpolation)) {
        throw new Error(`BrowserMLResize: unsupported interpolation ${this.interpolation}`);
      }
    }

    computeOutputShape(inputShape) {
      return [inputShape[0], this.height, this.width, inputShape[3]];
    }

    call(inputs) {
      return tf.tidy(() => {
        const x = Array.isArray(inputs) ? inputs[0] : inputs;
        const size = [this.height, this.width];
        return this.interpolation === 'nearest'
          ? tf.image.resizeNearestNeighbor(x, size, false, true)
          : tf.image.resizeBilinear(x, size, false, true);
      });
    }

    getConfig() {
      return { ...super.getConfig(), height: this.height, width: this.width, interpolation: this.interpolation };
    }

    static get className() {
      return 'BrowserMLResize';
    }
  }

  tf.serialization.registerClass(BrowserMLResize);
}
