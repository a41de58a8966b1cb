/**
 * Where a scheduled model's experts live and how they reach a slot of the GPU
 * slot pool: pinned experts are written into their slots once at load; the
 * host tier keeps one mappable upload buffer per expert (`MAP_WRITE |
 * COPY_SRC`: host-visible memory, outside the GPU budget) copied into a slot by
 * a command; the disk tier reads an expert from the safetensors files by
 * offset, converted to the compute dtype, and writes it into its slot
 * (`queue.writeBuffer`); disk-tier experts the slot pool holds as blocks of a
 * format the checkpoint does not store them in are quantized once at load into
 * a spill file (`spill.ts`) and read from there. What to move when is the
 * scheduler's business (`scheduler.ts`).
 *
 * @module
 */

import { byteSize } from "../../core/dtype.ts";
import { SLOT_POOL_PARAMS } from "../../models/states.ts";
import type { GpuDevice } from "../../runtime/device.ts";
import type { Executable } from "../../runtime/executable.ts";
import type { ExpertPlan } from "./placement.ts";
import { readWeightBytes, type WeightSource } from "../model/source.ts";
import type { QuantFormat } from "../../core/quant/formats.ts";
import type { ReadDType } from "../safetensors/mod.ts";
import { ExpertSpill } from "./spill.ts";

/**
 * One of an expert's three weights (SwiGLU: gate `w1`, up `w3`, down `w2`).
 *
 * @example
 * ```ts
 * import type { ExpertWeight } from "./tiers.ts";
 * const order: ExpertWeight[] = ["w1", "w3", "w2"]; // the pool's buffers, in this order
 * ```
 */
export type ExpertWeight = "w1" | "w3" | "w2";

/**
 * The checkpoint tensor of one weight of expert `expert` in MoE layer `layer`
 * (the index among the model's MoE layers).
 *
 * @example
 * ```ts
 * import type { ExpertTensorName } from "./tiers.ts";
 * const name: ExpertTensorName = (l, e, w) => `model.layers.${l}.block_sparse_moe.experts.${e}.${w}.weight`;
 * ```
 */
export type ExpertTensorName = (layer: number, expert: number, which: ExpertWeight) => string;

const WEIGHTS = ["w1", "w3", "w2"] as const;

/**
 * Block formats of quantized expert weights (the slot pool holds their
 * word-padded blocks): one for w1 and w3, one for w2.
 *
 * @example
 * ```ts
 * import type { ExpertFormats } from "./tiers.ts";
 * const q4km: ExpertFormats = { w13: "q4_k", w2: "q6_k" };
 * ```
 */
export interface ExpertFormats {
  /** Format of w1 and w3. */
  readonly w13: QuantFormat;
  /** Format of w2. */
  readonly w2: QuantFormat;
}

/**
 * The slot pool of one executable and the host and disk tiers that fill it.
 *
 * @example
 * ```ts ignore
 * import { ExpertTiers } from "./tiers.ts";
 * const tiers = ExpertTiers.allocate(model.prefill, "f16", ckpt, tensorName);
 * await tiers.fill(plan); // pinned experts into their slots, host-tier experts into upload buffers
 * tiers.useDisk(await Checkpoint.open(dir)); // the disk tier's own handle from now on
 * ```
 */
export class ExpertTiers {
  /** Bytes of one expert's weights (its slab in each pool buffer), in {@linkcode ExpertTiers.weights}' order. */
  readonly slabBytes: readonly number[];
  /** The pool's weights: `w1`, `w3`, `w2`, or `w1`, `w2` for ungated experts (no `w3` pool). */
  readonly weights: readonly ExpertWeight[];
  readonly #dev: GpuDevice;
  readonly #pool: readonly GPUBuffer[];
  /** Host-tier upload buffer of each expert; undefined for pinned and disk-tier experts. */
  readonly #host: (GPUBuffer | undefined)[][] = [];
  readonly #name: ExpertTensorName;
  /** What each weight is read as: values of a dtype, or blocks of a format. */
  readonly #targets: readonly (ReadDType | QuantFormat)[];
  /** Open checkpoint experts are read from (closed by `dispose`). */
  #ckpt?: WeightSource;
  /** Converted disk-tier experts, and each one's offset in it. */
  #spill?: ExpertSpill;
  readonly #spilled: (number | undefined)[][] = [];

  private constructor(
    dev: GpuDevice,
    weights: readonly ExpertWeight[],
    slabBytes: readonly number[],
    pool: readonly GPUBuffer[],
    ckpt: WeightSource,
    name: ExpertTensorName,
    targets: readonly (ReadDType | QuantFormat)[],
  ) {
    this.#dev = dev;
    this.weights = weights;
    this.slabBytes = slabBytes;
    this.#pool = pool;
    this.#ckpt = ckpt;
    this.#name = name;
    this.#targets = targets;
  }

  /**
   * Sets `exe`'s slot pool parameters (zeros, sized by the graph) in `dtype`.
   * Until {@linkcode ExpertTiers.useDisk}, experts are read from `ckpt`. A
   * graph without the pool, or expert slabs that are not whole 4-byte words:
   * a TypeError / RangeError naming them.
   *
   * @example
   * ```ts ignore
   * import { ExpertTiers } from "./tiers.ts";
   * const tiers = ExpertTiers.allocate(model.prefill, "f32", ckpt, tensorName);
   * tiers.expertBytes; // bytes of one expert's three weights
   * ```
   */
  static allocate(
    exe: Executable,
    dtype: "f32" | "f16",
    ckpt: WeightSource,
    tensorName: ExpertTensorName,
    formats?: ExpertFormats,
  ): ExpertTiers {
    const g = exe.graph;
    const shapeOf = (n: string) => {
      const id = g.params.get(n);
      if (id === undefined) throw new TypeError(`ExpertScheduler: the graph has no param "${n}"`);
      return g.values[id].shape as number[];
    };
    const w1 = shapeOf(SLOT_POOL_PARAMS.w1), w2 = shapeOf(SLOT_POOL_PARAMS.w2);
    const S = w1[0];
    // Quantized pools are u32 [slots, words]: a word-padded slab of blocks an expert.
    const el = formats ? 4 : byteSize(dtype);
    const per1 = formats ? w1[1] : w1[1] * w1[2], per2 = formats ? w2[1] : w2[1] * w2[2];
    const slab1 = per1 * el, slab2 = per2 * el;
    if (slab1 % 4 !== 0 || slab2 % 4 !== 0) {
      throw new RangeError(
        `ExpertScheduler: expert slabs of ${slab1} / ${slab2} bytes are not multiples of 4`,
      );
    }
    const Arr = formats ? Uint32Array : dtype === "f16" ? Float16Array : Float32Array;
    // Ungated experts (relu2) have no w3: the graph declares no pool for it.
    const weights = WEIGHTS.filter((w) => w !== "w3" || g.params.has(SLOT_POOL_PARAMS.w3));
    const per = (w: ExpertWeight) => (w === "w2" ? per2 : per1);
    exe.setParams(
      Object.fromEntries(weights.map((w) => [SLOT_POOL_PARAMS[w], new Arr(S * per(w))])),
    );
    return new ExpertTiers(
      exe.device as GpuDevice,
      weights,
      weights.map((w) => per(w) * el),
      weights.map((w) => exe.paramBuffer(SLOT_POOL_PARAMS[w])!),
      ckpt,
      tensorName,
      weights.map((w) => (formats ? (w === "w2" ? formats.w2 : formats.w13) : dtype)),
    );
  }

  /**
   * Writes `plan`'s pinned experts into their slots and its host-tier experts
   * into new upload buffers, straight from the checkpoint. On failure the
   * caller disposes (the buffers made so far are freed with the rest).
   *
   * @example
   * ```ts ignore
   * await tiers.fill(plan);
   * ```
   */
  async fill(plan: ExpertPlan): Promise<void> {
    const device = this.#dev.device;
    for (let l = 0; l < plan.layers; l++) {
      this.#host[l] ??= [];
      for (const e of plan.pinned[l]) await this.read(l, e, plan.tables[l][e]);
      for (const e of plan.host[l]) {
        const buf = device.createBuffer({
          label: `host expert ${l}.${e}`,
          size: this.expertBytes,
          // MAP_WRITE | COPY_SRC: implementations place mappable upload buffers
          // in host-visible memory (on a discrete GPU, system RAM the copy engine
          // reads over PCIe), so the host tier stays outside the VRAM budget.
          // COPY_SRC alone would let them live in VRAM.
          usage: GPUBufferUsage.MAP_WRITE | GPUBufferUsage.COPY_SRC,
          mappedAtCreation: true,
        });
        this.#host[l][e] = buf;
        const range = buf.getMappedRange();
        let off = 0;
        for (const [j, w] of this.weights.entries()) {
          const data = await this.#tensor(l, e, w, j);
          new Uint8Array(range, off, data.byteLength).set(data);
          off += data.byteLength;
        }
        buf.unmap();
      }
      for (const e of plan.disk[l] ?? []) {
        if (!this.#converted(l, e)) continue;
        this.#spill ??= await ExpertSpill.create();
        const slab = new Uint8Array(this.expertBytes);
        let off = 0;
        for (const [j, w] of this.weights.entries()) {
          const data = await this.#tensor(l, e, w, j);
          slab.set(data, off);
          off += data.byteLength;
        }
        (this.#spilled[l] ??= [])[e] = await this.#spill.append(slab);
      }
    }
  }

  /**
   * Reads disk-tier experts from `ckpt` from now on (kept open until
   * `dispose`); undefined: no disk tier.
   *
   * @example
   * ```ts ignore
   * tiers.useDisk(plan.disk.some((r) => r.length > 0) ? await Checkpoint.open(dir) : undefined);
   * ```
   */
  useDisk(ckpt: WeightSource | undefined): void {
    this.#ckpt = ckpt;
  }

  /**
   * True when experts can be read from a checkpoint (a disk tier).
   *
   * @example
   * ```ts ignore
   * if (tiers.hasDisk) await tiers.read(l, e, slot);
   * ```
   */
  get hasDisk(): boolean {
    return this.#ckpt !== undefined;
  }

  /**
   * Bytes of one expert.
   *
   * @example
   * ```ts ignore
   * stats.bytesUploaded += tiers.expertBytes;
   * ```
   */
  get expertBytes(): number {
    return this.slabBytes.reduce((a, b) => a + b, 0);
  }

  /**
   * Whether expert (l, e) has a host-tier upload buffer.
   *
   * @example
   * ```ts ignore
   * if (tiers.inHost(l, e)) tiers.copy(enc, l, e, slot);
   * ```
   */
  inHost(layer: number, expert: number): boolean {
    return this.#host[layer]?.[expert] !== undefined;
  }

  /**
   * Records the copy of host-tier expert (l, e) into slot `slot` on `enc`.
   *
   * @example
   * ```ts ignore
   * const enc = device.createCommandEncoder();
   * tiers.copy(enc, 0, 3, slot);
   * device.queue.submit([enc.finish()]);
   * ```
   */
  copy(enc: GPUCommandEncoder, layer: number, expert: number, slot: number): void {
    let off = 0;
    for (const [j, n] of this.slabBytes.entries()) {
      enc.copyBufferToBuffer(this.#host[layer][expert]!, off, this.#pool[j], slot * n, n);
      off += n;
    }
  }

  /**
   * Reads expert (l, e) from the checkpoint by offset, converted to the compute
   * dtype, into slot `slot` (`queue.writeBuffer`: ordered after the work already
   * submitted, before the next submission). One expert of host memory at a time.
   *
   * @example
   * ```ts ignore
   * await tiers.read(0, 5, slot);
   * ```
   */
  async read(l: number, e: number, slot: number): Promise<void> {
    const q = this.#dev.device.queue;
    const at = this.#spilled[l]?.[e];
    if (at !== undefined) {
      const slab = new Uint8Array(this.expertBytes);
      await this.#spill!.read(at, slab);
      let off = 0;
      for (const [j, n] of this.slabBytes.entries()) {
        q.writeBuffer(this.#pool[j], slot * n, slab, off, n);
        off += n;
      }
      return;
    }
    for (const [j, w] of this.weights.entries()) {
      const n = this.slabBytes[j];
      q.writeBuffer(this.#pool[j], slot * n, await this.#tensor(l, e, w, j));
    }
  }

  /**
   * Whether expert (l, e) is stored in another form than the pool's blocks, so
   * that reading it means quantizing it.
   */
  #converted(l: number, e: number): boolean {
    return this.weights.some((w, j) => {
      const target = this.#targets[j];
      if (target === "f32" || target === "f16") return false;
      const name = this.#name(l, e, w);
      return !this.#ckpt!.has(name) || this.#ckpt!.info(name).format !== target;
    });
  }

  /** One weight of an expert from the checkpoint, as bytes, size-checked. */
  async #tensor(
    l: number,
    e: number,
    w: ExpertWeight,
    j: number,
  ): Promise<Uint8Array<ArrayBuffer>> {
    const name = this.#name(l, e, w);
    const target = this.#targets[j];
    const data = await readWeightBytes(this.#ckpt!, name, target);
    const want = this.slabBytes[j];
    // Blocks fill their slab up to its last word.
    const quant = target !== "f32" && target !== "f16";
    if (
      data.byteLength !== want && !(quant && data.byteLength <= want && want - data.byteLength < 4)
    ) {
      throw new RangeError(`${name}: ${data.byteLength} bytes, expected ${want}`);
    }
    if (data.byteLength === want) return data;
    const padded = new Uint8Array(want);
    padded.set(data);
    return padded;
  }

  /**
   * Frees the host tier and closes the checkpoint it reads from.
   *
   * @example
   * ```ts ignore
   * tiers.dispose();
   * ```
   */
  dispose(): void {
    for (const row of this.#host) for (const b of row ?? []) b?.destroy();
    this.#host.length = 0;
    this.#ckpt?.close();
    this.#ckpt = undefined;
    this.#spill?.close();
    this.#spill = undefined;
    this.#spilled.length = 0;
  }
}
