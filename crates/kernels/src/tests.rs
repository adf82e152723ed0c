//! The fast kernels against straightforward loop references and against the candle fallback:
//! values and gradients, odd shapes, stride, padding, batch 1, overlapping pooling windows, ties.
use super::*;
use crate::test_util::{assert_close, flat, tensor, values};
use candle_core::{DType, Device, Result, Tensor, Var};

fn cpu() -> Device {
    Device::Cpu
}

struct ConvCase {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    o: usize,
    k: usize,
    stride: usize,
    pad: usize,
    relu: bool,
    bias: bool,
}

const CONV_CASES: &[ConvCase] = &[
    ConvCase { n: 2, c: 3, h: 9, w: 7, o: 5, k: 3, stride: 1, pad: 1, relu: false, bias: true },
    ConvCase { n: 1, c: 2, h: 8, w: 11, o: 4, k: 5, stride: 2, pad: 2, relu: true, bias: true },
    ConvCase { n: 3, c: 4, h: 7, w: 7, o: 6, k: 3, stride: 3, pad: 0, relu: false, bias: false },
    ConvCase { n: 5, c: 1, h: 6, w: 5, o: 3, k: 2, stride: 1, pad: 0, relu: true, bias: false },
    ConvCase { n: 1, c: 3, h: 5, w: 5, o: 2, k: 5, stride: 1, pad: 3, relu: true, bias: true },
    // Digit-net shapes, small batch.
    ConvCase { n: 4, c: 3, h: 28, w: 28, o: 8, k: 5, stride: 1, pad: 2, relu: true, bias: true },
    ConvCase { n: 7, c: 6, h: 15, w: 15, o: 7, k: 5, stride: 1, pad: 2, relu: true, bias: true },
    // Rows longer than one and two 16-lane vectors (37 and 31 outputs), batch 1 and 9 images.
    ConvCase { n: 9, c: 2, h: 5, w: 37, o: 3, k: 3, stride: 1, pad: 1, relu: true, bias: true },
    ConvCase { n: 1, c: 2, h: 4, w: 33, o: 17, k: 3, stride: 1, pad: 0, relu: false, bias: true },
];

/// Loop reference: output, and the gradients of `sum(y * r)`, in f64.
#[allow(clippy::type_complexity)]
fn conv_reference(
    cs: &ConvCase,
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    r: &[f32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
    let (oh, ow) = ((cs.h + 2 * cs.pad - cs.k) / cs.stride + 1, (cs.w + 2 * cs.pad - cs.k) / cs.stride + 1);
    let mut y = vec![0f64; cs.n * cs.o * oh * ow];
    let xi = |n: usize, c: usize, i: usize, j: usize| ((n * cs.c + c) * cs.h + i) * cs.w + j;
    let wi = |o: usize, c: usize, i: usize, j: usize| ((o * cs.c + c) * cs.k + i) * cs.k + j;
    let yi = |n: usize, o: usize, i: usize, j: usize| ((n * cs.o + o) * oh + i) * ow + j;
    // Calls f(n, o, oy, ox, input index, weight index) for every in-bounds tap.
    let taps = |f: &mut dyn FnMut(usize, usize, usize, usize, usize, usize)| {
        for n in 0..cs.n {
            for o in 0..cs.o {
                for oy in 0..oh {
                    for ox in 0..ow {
                        for c in 0..cs.c {
                            for ki in 0..cs.k {
                                for kj in 0..cs.k {
                                    let iy = (oy * cs.stride + ki) as isize - cs.pad as isize;
                                    let ix = (ox * cs.stride + kj) as isize - cs.pad as isize;
                                    if iy >= 0 && ix >= 0 && (iy as usize) < cs.h && (ix as usize) < cs.w {
                                        f(n, o, oy, ox, xi(n, c, iy as usize, ix as usize), wi(o, c, ki, kj));
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    taps(&mut |n, o, oy, ox, xa, wa| y[yi(n, o, oy, ox)] += x[xa] as f64 * w[wa] as f64);
    for n in 0..cs.n {
        for o in 0..cs.o {
            for p in 0..oh * ow {
                let v = &mut y[(n * cs.o + o) * oh * ow + p];
                *v += b.map_or(0.0, |b| b[o] as f64);
                if cs.relu {
                    *v = v.max(0.0);
                }
            }
        }
    }
    // Gradient of sum(y * r) with respect to the pre-activation.
    let gy: Vec<f64> = y.iter().zip(r).map(|(y, r)| if cs.relu && *y <= 0.0 { 0.0 } else { *r as f64 }).collect();
    let mut dx = vec![0f64; x.len()];
    let mut dw = vec![0f64; w.len()];
    taps(&mut |n, o, oy, ox, xa, wa| {
        let g = gy[yi(n, o, oy, ox)];
        dx[xa] += g * w[wa] as f64;
        dw[wa] += g * x[xa] as f64;
    });
    let mut db = vec![0f64; cs.o];
    for n in 0..cs.n {
        for o in 0..cs.o {
            db[o] += gy[(n * cs.o + o) * oh * ow..][..oh * ow].iter().sum::<f64>();
        }
    }
    let f = |v: Vec<f64>| v.into_iter().map(|v| v as f32).collect::<Vec<f32>>();
    (f(y), f(dx), f(dw), f(db))
}

/// Output and gradients of `sum(y * r)` through [`conv2d_with`].
fn conv_run(cs: &ConvCase, backend: Backend, seed: u64) -> (Vec<f32>, Vec<f32>, Vec<f32>, Option<Vec<f32>>) {
    let x = Var::from_tensor(&tensor(&[cs.n, cs.c, cs.h, cs.w], seed)).unwrap();
    let w = Var::from_tensor(&(tensor(&[cs.o, cs.c, cs.k, cs.k], seed + 1) * 0.5).unwrap()).unwrap();
    let b = Var::from_tensor(&(tensor(&[cs.o], seed + 2) * 0.3).unwrap()).unwrap();
    let p = Conv2dParams { stride: cs.stride, padding: cs.pad, relu: cs.relu };
    let y = conv2d_with(x.as_tensor(), w.as_tensor(), cs.bias.then_some(b.as_tensor()), p, backend).unwrap();
    let r = tensor(y.dims(), seed + 3);
    let grads = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
    let g = |v: &Var| grads.get(v.as_tensor()).map(flat);
    (flat(&y), g(&x).unwrap(), g(&w).unwrap(), g(&b))
}

#[test]
fn conv_matches_loop_reference_and_candle() {
    for (i, cs) in CONV_CASES.iter().enumerate() {
        let seed = 10 * i as u64;
        let x = values(cs.n * cs.c * cs.h * cs.w, seed);
        let w: Vec<f32> = values(cs.o * cs.c * cs.k * cs.k, seed + 1).iter().map(|v| v * 0.5).collect();
        let b: Vec<f32> = values(cs.o, seed + 2).iter().map(|v| v * 0.3).collect();
        let (fy, fdx, fdw, fdb) = conv_run(cs, Backend::Fast, seed);
        let r = values(fy.len(), seed + 3);
        let (ry, rdx, rdw, rdb) = conv_reference(cs, &x, &w, cs.bias.then_some(&b[..]), &r);
        let what = |s: &str| format!("case {i} {s}");
        assert_close(&fy, &ry, 1e-4, &what("y"));
        assert_close(&fdx, &rdx, 1e-4, &what("dx"));
        assert_close(&fdw, &rdw, 1e-4, &what("dw"));
        assert_eq!(fdb.is_some(), cs.bias, "{}", what("db presence"));
        if let Some(fdb) = fdb {
            assert_close(&fdb, &rdb, 1e-4, &what("db"));
        }
        let (cy, cdx, cdw, cdb) = conv_run(cs, Backend::Candle, seed);
        assert_close(&fy, &cy, 1e-4, &what("y vs candle"));
        assert_close(&fdx, &cdx, 1e-4, &what("dx vs candle"));
        assert_close(&fdw, &cdw, 1e-4, &what("dw vs candle"));
        if let (Some(a), Some(b)) = (conv_run(cs, Backend::Fast, seed).3, cdb) {
            assert_close(&a, &b, 1e-4, &what("db vs candle"));
        }
    }
}

/// Central differences of `sum(tanh(y) * r)` (in f64) against the analytic gradients.
#[test]
fn conv_gradients_match_finite_differences() -> Result<()> {
    let cs = ConvCase { n: 2, c: 2, h: 6, w: 5, o: 3, k: 3, stride: 2, pad: 1, relu: false, bias: true };
    let p = Conv2dParams { stride: cs.stride, padding: cs.pad, relu: cs.relu };
    let x0 = values(cs.n * cs.c * cs.h * cs.w, 7);
    let w0 = values(cs.o * cs.c * cs.k * cs.k, 8);
    let b0 = values(cs.o, 9);
    let xs = |v: &[f32]| Tensor::from_vec(v.to_vec(), (cs.n, cs.c, cs.h, cs.w), &cpu());
    let ws = |v: &[f32]| Tensor::from_vec(v.to_vec(), (cs.o, cs.c, cs.k, cs.k), &cpu());
    let bs = |v: &[f32]| Tensor::from_vec(v.to_vec(), cs.o, &cpu());
    let y = conv2d_with(&xs(&x0)?, &ws(&w0)?, Some(&bs(&b0)?), p, Backend::Fast)?;
    let r = tensor(y.dims(), 11).to_dtype(DType::F64)?;
    let loss = |x: &Tensor, w: &Tensor, b: &Tensor| -> Result<Tensor> {
        (conv2d_with(x, w, Some(b), p, Backend::Fast)?.to_dtype(DType::F64)?.tanh()? * &r)?.sum_all()
    };
    let (xv, wv, bv) = (Var::from_tensor(&xs(&x0)?)?, Var::from_tensor(&ws(&w0)?)?, Var::from_tensor(&bs(&b0)?)?);
    let grads = loss(xv.as_tensor(), wv.as_tensor(), bv.as_tensor())?.backward()?;
    let eps = 1e-2f32;
    let check = |which: usize, base: &[f32], analytic: &Tensor| -> Result<()> {
        let analytic = flat(analytic);
        for i in 0..base.len() {
            let mut plus = base.to_vec();
            let mut minus = base.to_vec();
            plus[i] += eps;
            minus[i] -= eps;
            let eval = |v: &[f32]| -> Result<f64> {
                let (x, w, b) = match which {
                    0 => (xs(v)?, ws(&w0)?, bs(&b0)?),
                    1 => (xs(&x0)?, ws(v)?, bs(&b0)?),
                    _ => (xs(&x0)?, ws(&w0)?, bs(v)?),
                };
                loss(&x, &w, &b)?.to_scalar::<f64>()
            };
            let fd = (eval(&plus)? - eval(&minus)?) / (2.0 * eps as f64);
            let a = analytic[i] as f64;
            assert!((a - fd).abs() <= 2e-3 * (1.0 + fd.abs()), "param {which} element {i}: analytic {a} vs fd {fd}");
        }
        Ok(())
    };
    check(0, &x0, grads.get(xv.as_tensor()).unwrap())?;
    check(1, &w0, grads.get(wv.as_tensor()).unwrap())?;
    check(2, &b0, grads.get(bv.as_tensor()).unwrap())?;
    Ok(())
}

#[test]
fn conv_skips_the_gradient_of_an_input_that_needs_none() -> Result<()> {
    let x = tensor(&[2, 3, 8, 8], 1);
    let w = Var::from_tensor(&tensor(&[4, 3, 3, 3], 2))?;
    let y = conv2d_with(&x, w.as_tensor(), None, Conv2dParams { stride: 1, padding: 1, relu: true }, Backend::Fast)?;
    let grads = y.sum_all()?.backward()?;
    assert!(grads.get(&x).is_none());
    let yc = conv2d_with(&x, w.as_tensor(), None, Conv2dParams { stride: 1, padding: 1, relu: true }, Backend::Candle)?;
    let gc = yc.sum_all()?.backward()?;
    assert_close(&flat(grads.get(w.as_tensor()).unwrap()), &flat(gc.get(w.as_tensor()).unwrap()), 1e-4, "dw");
    Ok(())
}

#[test]
fn conv_accepts_strided_inputs_and_rejects_bad_shapes() -> Result<()> {
    let x = tensor(&[2, 3, 7, 6], 3).transpose(2, 3)?; // [2, 3, 6, 7], not contiguous
    let w = tensor(&[4, 3, 3, 3], 4);
    let p = Conv2dParams { stride: 1, padding: 1, relu: false };
    let a = conv2d_with(&x, &w, None, p, Backend::Fast)?;
    let b = conv2d_with(&x, &w, None, p, Backend::Candle)?;
    assert_eq!(a.dims(), &[2, 4, 6, 7]);
    assert_close(&flat(&a), &flat(&b), 1e-4, "strided");
    assert!(conv2d(&x, &tensor(&[4, 2, 3, 3], 5), None, p).is_err());
    assert!(conv2d(&x, &w, Some(&tensor(&[3], 6)), p).is_err());
    assert!(conv2d(&x, &w, None, Conv2dParams { stride: 0, ..p }).is_err());
    assert!(conv2d_with(&x.to_dtype(DType::F64)?, &w.to_dtype(DType::F64)?, None, p, Backend::Fast).is_err());
    // Auto falls back to candle for f64.
    let a64 = conv2d(&x.to_dtype(DType::F64)?, &w.to_dtype(DType::F64)?, None, p)?;
    assert_close(&flat(&a64), &flat(&b), 1e-4, "f64 auto");
    Ok(())
}

/// Loop reference for max-pooling: output and `dx` for upstream gradient `r` (first maximum).
fn pool_reference(dims: [usize; 4], k: usize, s: usize, x: &[f32], r: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let [n, c, h, w] = dims;
    let (oh, ow) = ((h - k) / s + 1, (w - k) / s + 1);
    let mut y = vec![0f32; n * c * oh * ow];
    let mut dx = vec![0f32; x.len()];
    for pl in 0..n * c {
        for oy in 0..oh {
            for ox in 0..ow {
                let mut best = None::<(usize, f32)>;
                for dy in 0..k {
                    for dxx in 0..k {
                        let i = pl * h * w + (oy * s + dy) * w + ox * s + dxx;
                        if best.is_none_or(|(_, v)| x[i] > v) {
                            best = Some((i, x[i]));
                        }
                    }
                }
                let (i, v) = best.unwrap();
                let o = (pl * oh + oy) * ow + ox;
                y[o] = v;
                dx[i] += r[o];
            }
        }
    }
    (y, dx)
}

fn pool_run(x0: &Tensor, k: usize, s: usize, backend: Backend) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let x = Var::from_tensor(x0).unwrap();
    let y = max_pool2d_with(x.as_tensor(), k, s, backend).unwrap();
    let r = tensor(y.dims(), 99);
    let grads = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
    (flat(&y), flat(grads.get(x.as_tensor()).unwrap()), flat(&r))
}

#[test]
fn max_pool_matches_loop_reference_and_candle_fallback() {
    let cases: &[([usize; 4], usize, usize)] = &[
        ([2, 3, 8, 8], 2, 2),
        ([1, 2, 7, 9], 2, 2), // odd sizes: the last row/column are dropped (floor mode)
        ([2, 2, 32, 32], 3, 2),
        ([1, 3, 15, 15], 3, 2),
        ([3, 1, 6, 5], 3, 1),
        ([1, 1, 4, 4], 4, 4),
        ([2, 4, 11, 10], 3, 3),
    ];
    for (i, &(dims, k, s)) in cases.iter().enumerate() {
        let x = tensor(&dims, 100 + i as u64);
        let (y, dx, r) = pool_run(&x, k, s, Backend::Fast);
        let (ry, rdx) = pool_reference(dims, k, s, &flat(&x), &r);
        assert_eq!(y, ry, "case {i} y");
        assert_close(&dx, &rdx, 1e-6, &format!("case {i} dx"));
        let (cy, cdx, _) = pool_run(&x, k, s, Backend::Candle);
        assert_eq!(y, cy, "case {i} y vs candle");
        assert_close(&dx, &cdx, 1e-6, &format!("case {i} dx vs candle"));
    }
}

#[test]
fn max_pool_ties_route_to_the_first_maximum() {
    // Values from {0, 1, 2}: most windows hold several maxima.
    for (dims, k, s) in [([2, 2, 9, 9], 3, 2), ([1, 3, 8, 6], 2, 2), ([1, 1, 5, 5], 2, 1)] {
        let n: usize = dims.iter().product();
        let v: Vec<f32> = values(n, 5).iter().map(|v| ((v + 1.0) * 1.5).floor()).collect();
        let x = Tensor::from_vec(v.clone(), &dims, &cpu()).unwrap();
        let (y, dx, r) = pool_run(&x, k, s, Backend::Fast);
        let (ry, rdx) = pool_reference(dims, k, s, &v, &r);
        assert_eq!(y, ry);
        assert_close(&dx, &rdx, 1e-6, "ties dx");
        let (_, cdx, _) = pool_run(&x, k, s, Backend::Candle);
        assert_close(&dx, &cdx, 1e-6, "ties dx vs candle");
        // Gradient mass is conserved: one input per window.
        let total: f32 = r.iter().sum();
        assert!((dx.iter().sum::<f32>() - total).abs() < 1e-4);
    }
    // An all-equal plane: everything goes to the top-left of each window.
    let x = Tensor::ones((1, 1, 4, 4), DType::F32, &cpu()).unwrap();
    let (_, dx, _) = pool_run(&x, 2, 2, Backend::Fast);
    let hits: Vec<usize> = dx.iter().enumerate().filter(|(_, v)| **v != 0.0).map(|(i, _)| i).collect();
    assert_eq!(hits, vec![0, 2, 8, 10]);
}

#[test]
fn vectorised_pool_plane_matches_the_scalar_loop() {
    // Planes wider than one 16-lane block, odd remainders, ties and NaNs (which win, the last
    // one of a window over earlier ones).
    for (h, w, k, s) in [(28, 28, 2, 2), (31, 70, 2, 2), (32, 32, 3, 2), (15, 47, 3, 2), (9, 40, 3, 1), (4, 4, 4, 4)] {
        let mut v: Vec<f32> = values(h * w, (h * w) as u64).iter().map(|v| (v * 2.0).round()).collect();
        for i in (3..v.len()).step_by(37) {
            v[i] = f32::NAN;
        }
        let (oh, ow) = (crate::pool::pool_out(h, k, s), crate::pool::pool_out(w, k, s));
        let (mut out, mut arg) = (vec![0f32; oh * ow], vec![0u32; oh * ow]);
        let (mut out_s, mut arg_s) = (vec![0f32; oh * ow], vec![0u32; oh * ow]);
        crate::pool::pool_plane_scalar(&v, h, w, k, s, &mut out_s, &mut arg_s);
        for (name, pool_plane) in crate::pool::vectorised_pool_planes() {
            out.fill(-1.0);
            arg.fill(u32::MAX);
            pool_plane(&v, h, w, k, s, &mut out, &mut arg);
            assert_eq!(arg, arg_s, "{name} argmax {h}x{w} k{k} s{s}");
            let same = out.iter().zip(&out_s).all(|(a, b)| a == b || (a.is_nan() && b.is_nan()));
            assert!(same, "{name} values {h}x{w} k{k} s{s}");
        }
    }
}

#[test]
fn max_pool_on_a_conv_output_and_bad_arguments() -> Result<()> {
    // Pool after a conv in one graph (the usual convnet pattern): gradients reach the conv weights.
    let x = tensor(&[2, 3, 12, 12], 1);
    let w = Var::from_tensor(&tensor(&[4, 3, 5, 5], 2))?;
    let run = |be: Backend| -> Result<Vec<f32>> {
        let h = conv2d_with(&x, w.as_tensor(), None, Conv2dParams { stride: 1, padding: 2, relu: true }, be)?;
        let y = max_pool2d_with(&h, 3, 2, be)?;
        assert_eq!(y.dims(), &[2, 4, 5, 5]);
        let g = (y * tensor(&[2, 4, 5, 5], 3))?.sum_all()?.backward()?;
        Ok(flat(g.get(w.as_tensor()).unwrap()))
    };
    assert_close(&run(Backend::Fast)?, &run(Backend::Candle)?, 1e-4, "conv+pool dw");
    assert!(max_pool2d(&x, 13, 1).is_err());
    assert!(max_pool2d(&x, 2, 0).is_err());
    Ok(())
}

#[test]
fn fused_conv_pool_matches_conv_then_pool() {
    // (n, c, h, w, o, k, pad, relu, bias, pool kernel, pool stride, integer-valued inputs for ties)
    type Case = (usize, usize, usize, usize, usize, usize, usize, bool, bool, usize, usize, bool);
    let cases: &[Case] = &[
        (3, 3, 12, 12, 5, 5, 2, true, true, 2, 2, false),
        (1, 2, 9, 11, 4, 3, 1, true, true, 3, 2, false),
        (2, 4, 15, 15, 6, 5, 2, true, true, 3, 2, false),
        (2, 3, 8, 7, 3, 3, 0, false, false, 2, 2, false),
        (4, 2, 10, 10, 3, 3, 1, true, true, 2, 2, true),
        (2, 2, 11, 9, 4, 3, 1, false, true, 3, 2, true),
    ];
    for (i, &(n, c, h, w, o, k, pad, relu, bias, pk, ps, ints)) in cases.iter().enumerate() {
        let round = |t: Tensor| if ints { (t * 2.0).unwrap().round().unwrap() } else { t };
        let x0 = round(tensor(&[n, c, h, w], 200 + i as u64));
        let w0 = round(tensor(&[o, c, k, k], 300 + i as u64));
        let b0 = round(tensor(&[o], 400 + i as u64));
        let p = Conv2dParams { stride: 1, padding: pad, relu };
        let run = |fused: bool| -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
            let (x, wv, bv) =
                (Var::from_tensor(&x0).unwrap(), Var::from_tensor(&w0).unwrap(), Var::from_tensor(&b0).unwrap());
            let b = bias.then_some(bv.as_tensor());
            let y = if fused {
                conv2d_max_pool2d_with(x.as_tensor(), wv.as_tensor(), b, p, pk, ps, Backend::Fast).unwrap()
            } else {
                let h = conv2d_with(x.as_tensor(), wv.as_tensor(), b, p, Backend::Candle).unwrap();
                max_pool2d_with(&h, pk, ps, Backend::Candle).unwrap()
            };
            let r = tensor(y.dims(), 500 + i as u64);
            let grads = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let db = if bias { flat(grads.get(bv.as_tensor()).unwrap()) } else { vec![] };
            (flat(&y), flat(grads.get(x.as_tensor()).unwrap()), flat(grads.get(wv.as_tensor()).unwrap()), db)
        };
        let (fy, fdx, fdw, fdb) = run(true);
        let (cy, cdx, cdw, cdb) = run(false);
        assert_close(&fy, &cy, 1e-4, &format!("fused case {i} y"));
        assert_close(&fdx, &cdx, 1e-4, &format!("fused case {i} dx"));
        assert_close(&fdw, &cdw, 1e-4, &format!("fused case {i} dw"));
        assert_close(&fdb, &cdb, 1e-4, &format!("fused case {i} db"));
    }
    let x = tensor(&[1, 1, 4, 4], 1);
    let w = tensor(&[1, 1, 3, 3], 2);
    let p = Conv2dParams { stride: 1, padding: 0, relu: true };
    assert!(conv2d_max_pool2d(&x, &w, None, p, 3, 1).is_err(), "pool larger than the 2x2 conv output");
}

#[test]
fn linear_matches_candle_values_and_gradients() {
    // (batch, in, out, bias, input needs a gradient); the large ones run blocked and in parallel.
    for (i, &(bs, inp, out, bias, x_grad)) in [
        (1usize, 5usize, 3usize, true, true),
        (7, 13, 10, false, true),
        (17, 300, 257, true, true),
        (64, 1000, 100, true, false),
        (33, 257, 1031, true, true),
    ]
    .iter()
    .enumerate()
    {
        let x0 = tensor(&[bs, inp], 600 + i as u64);
        let w0 = (tensor(&[out, inp], 700 + i as u64) * 0.1).unwrap();
        let b0 = tensor(&[out], 800 + i as u64);
        let run = |backend: Backend| {
            let (x, w, b) =
                (Var::from_tensor(&x0).unwrap(), Var::from_tensor(&w0).unwrap(), Var::from_tensor(&b0).unwrap());
            let xin = if x_grad { x.as_tensor().clone() } else { x0.clone() };
            let y = linear_with(&xin, w.as_tensor(), bias.then_some(b.as_tensor()), backend).unwrap();
            assert_eq!(y.dims(), &[bs, out]);
            let r = tensor(&[bs, out], 900 + i as u64);
            let g = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
            assert_eq!(g.get(x.as_tensor()).is_some(), x_grad);
            assert_eq!(g.get(b.as_tensor()).is_some(), bias);
            (
                flat(&y),
                g.get(x.as_tensor()).map(flat),
                flat(g.get(w.as_tensor()).unwrap()),
                g.get(b.as_tensor()).map(flat),
            )
        };
        let (fy, fdx, fdw, fdb) = run(Backend::Fast);
        let (cy, cdx, cdw, cdb) = run(Backend::Candle);
        assert_close(&fy, &cy, 1e-4, &format!("linear {i} y"));
        assert_close(&fdw, &cdw, 1e-4, &format!("linear {i} dw"));
        if let (Some(a), Some(b)) = (fdx, cdx) {
            assert_close(&a, &b, 1e-4, &format!("linear {i} dx"));
        }
        if let (Some(a), Some(b)) = (fdb, cdb) {
            assert_close(&a, &b, 1e-4, &format!("linear {i} db"));
        }
    }
    let x = tensor(&[2, 3], 1);
    assert!(linear(&x, &tensor(&[4, 5], 2), None).is_err());
    assert!(linear(&x, &tensor(&[4, 3], 2), Some(&tensor(&[3], 3))).is_err());
    // Rank 3 goes through candle.
    let y = linear(&tensor(&[2, 2, 3], 4), &tensor(&[4, 3], 5), None).unwrap();
    assert_eq!(y.dims(), &[2, 2, 4]);
}

#[test]
fn in_place_sgd_matches_the_pytorch_update() -> Result<()> {
    for (nesterov, wd, momentum) in [(false, 0.0, 0.9), (true, 0.01, 0.9), (false, 0.01, 0.0)] {
        let n = 100_003; // several parallel chunks and a ragged tail
        let p0 = values(n, 1);
        let s = SgdStep { lr: 0.1, momentum, weight_decay: wd, nesterov };
        let fast = Var::from_vec(p0.clone(), n, &cpu())?;
        let slow = Var::from_vec(p0.iter().map(|&v| v as f64).collect::<Vec<_>>(), n, &cpu())?; // f64: the tensor-op path
        let (mut vf, mut vs) = (None, None);
        let (mut p, mut v) = (p0.iter().map(|&x| x as f64).collect::<Vec<_>>(), vec![0f64; n]);
        for step in 0..3 {
            let g = values(n, 10 + step);
            sgd_momentum_update(&fast, &mut vf, &Tensor::from_vec(g.clone(), n, &cpu())?, s)?;
            let g64: Vec<f64> = g.iter().map(|&x| x as f64).collect();
            sgd_momentum_update(&slow, &mut vs, &Tensor::from_vec(g64.clone(), n, &cpu())?, s)?;
            for i in 0..n {
                let gi = g64[i] + wd * p[i];
                v[i] = if step == 0 || momentum == 0.0 { gi } else { momentum * v[i] + gi };
                p[i] -= 0.1 * if nesterov { gi + momentum * v[i] } else { v[i] };
            }
            let pf: Vec<f32> = flat(fast.as_tensor());
            let ps: Vec<f32> = flat(slow.as_tensor());
            let pr: Vec<f32> = p.iter().map(|&x| x as f32).collect();
            assert_close(&pf, &pr, 1e-5, &format!("fast step {step} nesterov {nesterov}"));
            assert_close(&ps, &pr, 1e-5, &format!("tensor-op step {step} nesterov {nesterov}"));
            assert_eq!(vf.is_some(), momentum != 0.0);
            if let Some(vf) = &vf {
                assert!(!vf.track_op());
            }
        }
    }
    let x = Var::from_vec(vec![1f32, 2.0], 2, &cpu())?;
    let mut v = None;
    assert!(
        sgd_momentum_update(
            &x,
            &mut v,
            &Tensor::zeros(3, DType::F32, &cpu())?,
            SgdStep { lr: 0.1, momentum: 0.9, weight_decay: 0.0, nesterov: false }
        )
        .is_err()
    );
    Ok(())
}

#[test]
fn conv_weight_gradients_are_bit_identical_across_repeats() -> Result<()> {
    // Many small chunks on several threads: with sums in scheduling order this differs between
    // repeats; a seeded training run must not.
    let pool = rayon::ThreadPoolBuilder::new().num_threads(4).build().map_err(candle_core::Error::wrap)?;
    pool.install(|| -> Result<()> {
        let x = tensor(&[96, 3, 14, 14], 11);
        let w0 = tensor(&[16, 3, 5, 5], 12);
        let b0 = tensor(&[16], 13);
        let r = tensor(&[96, 16, 14, 14], 14);
        let params = Conv2dParams { stride: 1, padding: 2, relu: true };
        let mut first: Option<(Vec<f32>, Vec<f32>)> = None;
        for _ in 0..6 {
            let (w, b) = (Var::from_tensor(&w0)?, Var::from_tensor(&b0)?);
            let y = conv2d(&x, w.as_tensor(), Some(b.as_tensor()), params)?;
            let grads = (y * &r)?.sum_all()?.backward()?;
            let got = (flat(grads.get(&w).unwrap()), flat(grads.get(&b).unwrap()));
            match &first {
                None => first = Some(got),
                Some(f) => assert!(f == &got, "weight or bias gradient changed between identical repeats"),
            }
        }
        Ok(())
    })
}
