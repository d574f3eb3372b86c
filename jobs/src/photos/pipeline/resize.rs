//! The variant sizes and the resize chain: each size is made from the previous (larger) one,
//! 2560 → 1280 → 320, so the full-size original is read once.

use super::Rgb;
use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

/// Long-edge sizes of the variants, largest first (the order of the chain).
pub const SIZES: [u32; 3] = [2560, 1280, 320];

/// One variant to make: its nominal size and its real dimensions in stored orientation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub size: u32,
    pub width: u32,
    pub height: u32,
}

/// `width × height` scaled so its long edge is `long`, never upscaled, each side at least 1.
pub fn fit(width: u32, height: u32, long: u32) -> (u32, u32) {
    let edge = width.max(height);
    if edge <= long {
        return (width, height);
    }
    let scale = |side: u32| {
        ((u64::from(side) * u64::from(long) + u64::from(edge) / 2) / u64::from(edge)).max(1) as u32
    };
    (scale(width), scale(height))
}

/// The variants of a `width × height` original, largest first. Sizes the original is smaller
/// than are not upscaled: only the smallest of them is made, at the original's size, so no two
/// variants are the same picture.
pub fn plan(width: u32, height: u32) -> Vec<Step> {
    let edge = width.max(height);
    let mut steps: Vec<Step> = Vec::new();
    for (i, &size) in SIZES.iter().enumerate() {
        let next_also_covers = SIZES.get(i + 1).is_some_and(|&next| edge <= next);
        if edge <= size && next_also_covers {
            continue;
        }
        let (w, h) = fit(width, height, size);
        steps.push(Step {
            size,
            width: w,
            height: h,
        });
    }
    steps
}

/// Make every step of `plan` from `source`, each from the previous output.
pub fn chain(source: Rgb, plan: &[Step]) -> Vec<(Step, Rgb)> {
    let mut resizer = Resizer::new();
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3));
    let mut out: Vec<(Step, Rgb)> = Vec::with_capacity(plan.len());
    let mut source = Some(source);
    for step in plan {
        let rgb = match (out.last(), source.take()) {
            // The original itself when the first size does not shrink it (never upscaled);
            // otherwise it is dropped as soon as the largest variant exists.
            (None, Some(original))
                if (original.width, original.height) == (step.width, step.height) =>
            {
                original
            }
            (None, Some(original)) => resize_to(&mut resizer, &options, &original, step),
            (Some((_, previous)), _) => resize_to(&mut resizer, &options, previous, step),
            (None, None) => unreachable!("the source is only taken once"),
        };
        out.push((*step, rgb));
    }
    out
}

fn resize_to(resizer: &mut Resizer, options: &ResizeOptions, from: &Rgb, step: &Step) -> Rgb {
    if (from.width, from.height) == (step.width, step.height) {
        return from.clone();
    }
    // Both images are U8x3 of the size `Rgb::new` checked, so neither call can fail.
    let src = ImageRef::new(from.width, from.height, &from.data, PixelType::U8x3)
        .expect("an RGB buffer of its stated size");
    let mut dst = Image::new(step.width, step.height, PixelType::U8x3);
    resizer
        .resize(&src, &mut dst, options)
        .expect("same pixel type, no cropping");
    Rgb::new(step.width, step.height, dst.into_vec()).expect("RGB layout")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_keeps_the_aspect_and_never_upscales() {
        assert_eq!(fit(6000, 4000, 2560), (2560, 1707));
        assert_eq!(fit(4000, 6000, 320), (213, 320));
        assert_eq!(fit(800, 600, 1280), (800, 600));
        assert_eq!(fit(10_000, 1, 320), (320, 1));
    }

    #[test]
    fn plan_makes_three_sizes_of_a_large_photo() {
        let sizes: Vec<_> = plan(6000, 4000).iter().map(|s| (s.size, s.width)).collect();
        assert_eq!(sizes, vec![(2560, 2560), (1280, 1280), (320, 320)]);
    }

    #[test]
    fn plan_skips_duplicate_sizes_of_a_small_photo() {
        let steps = plan(1000, 700);
        let sizes: Vec<_> = steps.iter().map(|s| (s.size, s.width, s.height)).collect();
        assert_eq!(sizes, vec![(1280, 1000, 700), (320, 320, 224)]);
        let tiny: Vec<_> = plan(200, 100).iter().map(|s| (s.size, s.width)).collect();
        assert_eq!(tiny, vec![(320, 200)]);
    }

    #[test]
    fn chain_produces_each_planned_size() {
        let source = Rgb::new(900, 600, vec![200; 900 * 600 * 3]).unwrap();
        let steps = plan(900, 600);
        let out = chain(source, &steps);
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].1.width, out[0].1.height), (900, 600));
        assert_eq!((out[1].1.width, out[1].1.height), (320, 213));
        assert!(out[1].1.data.iter().all(|&c| c == 200));
    }
}
