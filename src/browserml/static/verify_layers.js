// Page module for `browserml verify`: registers the SDK's own TF.js layer classes (the layers
// Keras models need that tfjs-layers lacks) before verify.js loads any model, as the SDK does.
/* global tf */
import { registerBrowserMLLayers } from '/sdk/engines/tfjs-layers.js';

registerBrowserMLLayers(tf);
window.browsermlLayersReady = true;
