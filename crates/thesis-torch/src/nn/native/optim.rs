//! Gradient-norm clipping and the Adam update over the flat parameter vector.

use crate::nn::AdamConfig;

use super::NativeNetwork;

impl NativeNetwork {
    /// Scales the gradients to a total 2-norm of at most `max_norm` (`clip_grad_norm_`).
    pub(super) fn clip(&mut self, max_norm: f64) {
        let total = self
            .grads
            .iter()
            .map(|&g| f64::from(g) * f64::from(g))
            .sum::<f64>()
            .sqrt() as f32;
        let coef = ((1.0 / (total + 1e-6)) * max_norm as f32).min(1.0);
        for g in &mut self.grads {
            *g *= coef;
        }
    }

    /// One Adam update, the formula of [`crate::nn::Adam::step`] element by element.
    pub(super) fn adam_step(&mut self, config: &AdamConfig) {
        self.step += 1;
        let step = self.step as f64;
        let bias_correction1 = 1.0 - config.beta1.powf(step);
        let bias_correction2_sqrt = (1.0 - config.beta2.powf(step)).sqrt() as f32;
        let step_size = (config.lr / bias_correction1) as f32;
        let (weight1, beta2, weight2, eps) = (
            (1.0 - config.beta1) as f32,
            config.beta2 as f32,
            (1.0 - config.beta2) as f32,
            config.eps as f32,
        );
        for (((p, &g), m), v) in self
            .params
            .iter_mut()
            .zip(&self.grads)
            .zip(&mut self.exp_avg)
            .zip(&mut self.exp_avg_sq)
        {
            *m += weight1 * (g - *m);
            *v = *v * beta2 + (weight2 * g) * g;
            let denom = v.sqrt() / bias_correction2_sqrt + eps;
            *p += (-step_size * *m) / denom;
        }
    }
}
