/**
 * Standalone reproduction (no Kiln code): Deno's process aborts in native code at
 * exit — "double free or corruption (fasttop)", "malloc(): unsorted double linked
 * list corrupted", "corrupted size vs. prev_size in fastbins", or SIGSEGV — when a
 * worker thread that used WebGPU is still being torn down while the main thread
 * exits. This is the crash Kiln's `deno task test` hit at exit (issue 12):
 * `deno test --parallel` runs each test module on its own thread with its own
 * WebGPU instance, and the same abort follows a fully passing run.
 *
 * Run it many times and count the failures:
 *
 *   export XDG_RUNTIME_DIR=/tmp/xdg; mkdir -p $XDG_RUNTIME_DIR
 *   for i in $(seq 100); do deno run -A tools/repro/webgpu_exit_abort.ts >/dev/null 2>&1 \
 *     || echo "run $i: rc=$?"; done
 *
 * What it does: 4 workers each request an adapter and device from `navigator.gpu`,
 * run a small compute shader five times and read the result back (every
 * `mapAsync` awaited, nothing in flight), then report. The main thread
 * terminates the workers and returns at once, so the process exits while the
 * workers' WebGPU instances (wgpu-core on Vulkan) are still being dropped.
 *
 * Seen here, this script as it stands: 8 of 100 runs (rc 134 SIGABRT with
 * "corrupted size vs. prev_size in fastbins", "corrupted double-linked list" or
 * "malloc_consolidate(): unaligned fastbin chunk detected", or rc 139 SIGSEGV).
 * With DENO_WEBGPU_BACKEND=vulkan (no GL/EGL instance): 1 of 100 (SIGSEGV).
 * The same script shape with `device.destroy()` in every worker: 5 of 100, as
 * without it (5 of 100) — destroying devices does not avoid it. `--wait` (stay
 * alive 1 s after terminating the workers): 0 of 80; the same GPU work on the
 * main thread alone: 0 of 80. So it is a race between a thread's WebGPU
 * teardown and process exit, not a misuse of the API. A core dump of the
 * `deno test` form showed the main thread in exit() → _dl_fini, running the
 * shared libraries' destructors (libLLVM-15, EGL/Mesa and Vulkan are loaded),
 * while another thread
 * was exiting and freeing its malloc cache (__libc_thread_freeres →
 * tcache_thread_shutdown → free), where glibc found the heap corrupted.
 *
 * Environment: Deno 2.9.6 (x86_64-unknown-linux-gnu, V8 15.0), Debian 12, Mesa
 * 22.3.6 lavapipe ("llvmpipe (LLVM 15.0.6, 256 bits)", software Vulkan), 2 CPU
 * cores; the machine was otherwise busy. `deno test -A --parallel` over six test
 * files that each request a device and run this shader aborted the same way after
 * "ok | 6 passed | 0 failed" (see the report of issue 12).
 *
 * Flags: --destroy (call device.destroy() in each worker), --wait (terminate,
 * then wait 1 s before exiting), --workers=N (default 4).
 */

const WORKER_NAME = "webgpu-exit-abort-worker";

if ((globalThis as { name?: string }).name === WORKER_NAME) {
  const scope = self as unknown as {
    onmessage: (e: MessageEvent<boolean[]>) => void;
    postMessage(message: unknown): void;
  };
  const [destroy] = await new Promise<boolean[]>((resolve) => {
    scope.onmessage = (e) => resolve(e.data);
  });
  const adapter = await navigator.gpu.requestAdapter();
  if (!adapter) throw new Error("no WebGPU adapter");
  const device = await adapter.requestDevice();
  const code = `@group(0) @binding(0) var<storage, read_write> a: array<f32>;
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) g: vec3u) {
  if (g.x < arrayLength(&a)) { a[g.x] = a[g.x] * 2.0 + 1.0; }
}`;
  const pipeline = device.createComputePipeline({
    layout: "auto",
    compute: { module: device.createShaderModule({ code }), entryPoint: "main" },
  });
  const n = 1 << 16;
  for (let i = 0; i < 5; i++) {
    const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
    const buf = device.createBuffer({ size: n * 4, usage });
    const staging = device.createBuffer({
      size: n * 4,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    device.queue.writeBuffer(buf, 0, new Float32Array(n).fill(1));
    const enc = device.createCommandEncoder();
    const pass = enc.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(
      0,
      device.createBindGroup({
        layout: pipeline.getBindGroupLayout(0),
        entries: [{ binding: 0, resource: { buffer: buf } }],
      }),
    );
    pass.dispatchWorkgroups(n / 64);
    pass.end();
    enc.copyBufferToBuffer(buf, 0, staging, 0, n * 4);
    device.queue.submit([enc.finish()]);
    await staging.mapAsync(GPUMapMode.READ);
    const v = new Float32Array(staging.getMappedRange())[0];
    if (v !== 3) throw new Error(`wrong result ${v}`);
    staging.unmap();
  }
  if (destroy) device.destroy();
  scope.postMessage("done");
} else {
  const destroy = Deno.args.includes("--destroy");
  const wait = Deno.args.includes("--wait");
  const count = Number(Deno.args.find((a) => a.startsWith("--workers="))?.slice(10) ?? 4);
  const workers = Array.from(
    { length: count },
    () => new Worker(import.meta.url, { type: "module", name: WORKER_NAME }),
  );
  await Promise.all(workers.map((w) =>
    new Promise<void>((resolve, reject) => {
      w.onmessage = () => resolve();
      w.onerror = (e) => reject(e);
      w.postMessage([destroy]);
    })
  ));
  console.log(`${count} workers done; terminating them and exiting`);
  for (const w of workers) w.terminate();
  if (wait) await new Promise((r) => setTimeout(r, 1000));
}
