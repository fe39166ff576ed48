"""Compile a Graph into a flat plan of kernel steps over preallocated, reused buffers, then run it.

Compilation happens once per graph; binding to concrete input shapes once per batch size. Binding
  1. picks each node's layout (cnhw for convolutions and what follows them, nchw for Flatten/Linear) and
     inserts a transpose step where a value is needed in the other layout (a free view at batch 1);
  2. computes each value's lifetime and assigns storage (storage.py): views share their input's buffer,
     element-wise kernels write in place over an input that dies at that step, everything else gets an
     offset in one arena, free of the values alive at the same time — so the arena is the largest live set
     (memory.py measures it against that bound), not the sum of all activations; element-wise layers that
     alone read a convolution's output (BatchNorm, activations) are absorbed into it and applied block by
     block while the block is in cache (a BatchNorm right behind it is folded into its weight and bias, as
     onnxruntime does: equal within rounding); a MaxPool2d that alone reads the result runs inside the same
     step when the convolution's kernel can host it (fused_pool.py), its input never stored;
  3. places each step's scratch (its temporaries) in the same arena, as a value alive during the step.
Graph outputs are returned as fresh NCHW arrays that no later run overwrites. Executor.set_params gives a
compiled graph new parameters by rebuilding only the steps they reach (a training loop). A graph that cannot
be cut by batch, run with BLAS on one thread (training graphs), spreads its steps over the cores instead
(schedule.py).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial

import numpy as np

from cnngraph.errors import CnnGraphError

from . import batch_split, fused_pool, schedule, storage
from .inputs import coerce_inputs, concrete_shape
from .kernel import KERNELS, NCHW, Context, Scratch, physical_shape

PLANS_PER_EXECUTOR = 8
MIN_LANE_MACS = 100_000_000    # a plan spreads its steps over the cores (schedule.py) from this much work a run


@dataclass
class Step:
    label: str
    run: object                 # step(inputs, out) -> array
    reads: list                 # slots
    writes: int                 # slot
    out: object = None          # preallocated output view, or a shape for a fresh array each run
    fresh: bool = False
    scratch: int = 0            # float32 elements of scratch the step uses
    scratch_id: int = -1        # its region of the Scratch
    nodes: tuple = ()           # the graph nodes it computes (host and absorbed layers)
    remake: object = None       # remake(graph) -> run, built from those nodes' current parameters


class Executor:
    """A graph compiled for the NumPy backend as it is now (later edits of the graph do not reach it: cg.run
    compiles again); call it with input arrays.

    A batch whose samples never meet (batch_split.batch_symbol) and that has enough work runs as one piece
    per core, each piece on a plan of its own. Otherwise, under batch_split.training_threads() (BLAS on one
    thread), a run with enough work spreads the plan's steps over the cores (schedule.py)."""

    def __init__(self, graph):
        missing = sorted({n.op for n in graph.layers() if n.op not in KERNELS})
        if missing:
            raise CnnGraphError(f"the NumPy backend has no kernel for {', '.join(missing)}")
        # A snapshot (nodes and arrays are immutable, so it costs no parameter memory): plans compiled later,
        # for other batch sizes, see the same graph, and the cache in __init__.py does not keep the graph alive.
        self.graph = graph.copy()
        self.batch_symbol = batch_split.batch_symbol(graph)
        self.macs_per_sample = graph.macs()
        self.splitting_macs = batch_split.splitting_macs(graph)
        self._plans: dict[tuple, Plan] = {}
        self._edits = 0                              # set_params calls so far
        self._edited_at: dict[str, int] = {}         # node -> the set_params call that last changed it

    def set_params(self, name: str, **arrays) -> None:
        """Give node ``name`` new parameter arrays (Graph.set_params) without compiling again: the next run of
        each plan rebuilds only its steps that compute that node, keeping its buffers and schedule (what a
        training loop needs after each optimizer step; a plan for another batch size, such as an epoch's last
        batch, catches up when it is next used)."""
        self.graph.set_params(name, **arrays)
        self._edits += 1
        self._edited_at[name] = self._edits

    def __call__(self, *arrays):
        data, bindings = coerce_inputs(self.graph, arrays)
        ranges = [(0, None)]
        if self.batch_symbol is not None:
            ranges = batch_split.cuts(bindings[self.batch_symbol], self.macs_per_sample)
        if len(ranges) == 1:
            if batch_split.training_active():             # a training graph: its steps on one lane per core
                batch = bindings.get(self.batch_symbol, 1) if self.batch_symbol else max(
                    (a.shape[0] for a in data if a.ndim), default=1)
                lanes = batch_split.WORKERS if self.macs_per_sample * batch >= MIN_LANE_MACS else 1
                outputs = self._plan(data, bindings, 0, lanes).run(data)
            else:
                with batch_split.inference_threads(self.splitting_macs):      # big kernels split their own work
                    outputs = self._plan(data, bindings, 0, 1).run(data)
        else:
            pieces = [[array[start:stop] for array in data] for start, stop in ranges]
            plans = [self._plan(piece, dict(bindings, **{self.batch_symbol: stop - start}), index)
                     for index, (piece, (start, stop)) in enumerate(zip(pieces, ranges))]
            with batch_split.single_threaded_blas():
                results = batch_split.in_parallel([partial(plan.run, piece) for plan, piece in zip(plans, pieces)])
            outputs = [np.concatenate(parts, axis=0) for parts in zip(*results)]
        return outputs[0] if len(outputs) == 1 else tuple(outputs)

    def _plan(self, data, bindings, piece: int, lanes: int = 1) -> Plan:
        """The plan for these input shapes and this piece of the batch (pieces run at once: each needs its
        own buffers) on ``lanes`` threads, compiled on first use."""
        key = (tuple(a.shape for a in data), piece, lanes)
        plan = self._plans.get(key)
        if plan is None:
            if len(self._plans) >= PLANS_PER_EXECUTOR:
                self._plans.pop(next(iter(self._plans)))
            plan = self._plans[key] = Plan(self.graph, bindings, lanes)
            plan.synced = self._edits
        if plan.synced < self._edits:
            plan.rebind(self.graph, {name for name, at in self._edited_at.items() if at > plan.synced})
            plan.synced = self._edits
        return plan


class Plan:
    def __init__(self, graph, bindings, lanes: int = 1):
        self.lanes = lanes
        self.synced = 0                                  # the Executor.set_params calls its steps reflect
        self.schedule: schedule.Schedule | None = None   # set after the first (timed) run when lanes > 1
        self.scratch = Scratch()
        self.slots: dict[tuple, int] = {}            # (value name, layout) -> slot
        self.shapes: list[tuple] = []                # slot -> physical shape
        self.steps: list[Step] = []
        self.view_of: dict[int, int] = {}            # slot -> slot whose storage it shares
        self.inplace_candidate: dict[int, int] = {}  # output slot -> input slot it may overwrite
        shape_of = {n.name: concrete_shape(n.type.shape, bindings) for n in graph.nodes}
        home: dict[str, str] = {}
        self.input_slots = []
        for name in graph.inputs:
            home[name] = NCHW
            self.input_slots.append(self._slot((name, NCHW), shape_of[name]))
        self.constants: dict[int, np.ndarray] = {}   # slot -> a Constant's array, bound like an input
        self.constant_nodes: dict[int, str] = {}     # slot -> the Constant node
        self.epilogues = epilogue_chains(graph)
        self.pools = self._fused_pools(graph, shape_of)     # host -> the MaxPool2d run inside its step
        absorbed = {e.name for chain in self.epilogues.values() for e in chain} | {p.name for p in self.pools.values()}
        for node in graph.layers():
            if KERNELS[node.op].constant:
                home[node.name] = NCHW
                value = KERNELS[node.op].make(Context(node.attrs, node.params, [], shape_of[node.name], NCHW,
                                                      self.scratch))
                slot = self._slot((node.name, NCHW), shape_of[node.name])
                self.constants[slot] = value
                self.constant_nodes[slot] = node.name
            elif node.name not in absorbed:
                self._add_node(graph, node, shape_of, home)
        self.output_slots = [self._in_layout(name, NCHW, shape_of, home) for name in graph.outputs]
        self._assign_storage()

    # --- building the step list --------------------------------------------------------------------------
    def _slot(self, key, logical_shape) -> int:
        self.slots[key] = len(self.shapes)
        self.shapes.append(physical_shape(logical_shape, key[1]))
        return self.slots[key]

    def _in_layout(self, name, layout, shape_of, home) -> int:
        """Slot holding value ``name`` in ``layout``, adding a transpose step the first time it is needed."""
        shape = shape_of[name]
        if len(shape) != 4:
            layout = home[name]
        key = (name, layout)
        if key in self.slots:
            return self.slots[key]
        source = self.slots[(name, home[name])]
        slot = self._slot(key, shape)
        if shape[0] == 1:                     # (1, C, H, W) and (C, 1, H, W) have the same memory order
            target = self.shapes[slot]
            self.steps.append(Step(f"{name}->{layout}", lambda inputs, out, t=target: inputs[0].reshape(t),
                              [source], slot))
            self.view_of[slot] = source
        else:
            self.steps.append(Step(f"{name}->{layout}", _transpose, [source], slot))
        return slot

    def _add_node(self, graph, node, shape_of, home) -> None:
        kernel = KERNELS[node.op]
        first_home = home.get(node.inputs[0], NCHW) if node.inputs else NCHW
        layout = first_home if first_home in kernel.layouts else kernel.layouts[0]
        reads = [self._in_layout(name, layout, shape_of, home) for name in node.inputs]
        home[node.name] = layout if len(shape_of[node.name]) == 4 else NCHW
        chain = self.epilogues.get(node.name, [])
        pool = self.pools.get(node.name)      # a fused max pool: the step writes its value, not the host's
        written = pool or node
        home[written.name] = home[node.name]
        scratch_id = self.scratch.begin_step()
        run = self._make(node, chain, layout, shape_of, pool)
        slot = self._slot((written.name, home[written.name]), shape_of[written.name])
        self.steps.append(Step(" + ".join([node.label()] + [e.label() for e in chain] + ([pool.label()] if pool else [])),
                               run, reads, slot, scratch=self.scratch.sizes[scratch_id], scratch_id=scratch_id,
                               nodes=(node.name, *(e.name for e in chain), *([pool.name] if pool else [])),
                               remake=partial(self._remake, node.name, [e.name for e in chain], layout, shape_of,
                                              scratch_id, pool.name if pool else None)))
        for e in chain if pool is None else ():   # the absorbed layers' values are the host's buffer
            home[e.name] = home[node.name]
            self.slots[(e.name, home[e.name])] = slot
        if kernel.view:
            self.view_of[slot] = reads[0]
        elif kernel.inplace:
            self.inplace_candidate[slot] = reads[0]

    def _remake(self, name, chain, layout, shape_of, scratch_id, pool, graph):
        self.scratch.begin_step(scratch_id)
        return self._make(graph.node(name), [graph.node(e) for e in chain], layout, shape_of,
                          graph.node(pool) if pool else None)

    def rebind(self, graph, changed: set) -> None:
        """Rebuild the steps computing the ``changed`` nodes of ``graph`` (same shapes, new parameters); their
        scratch requests are the same as before, so the arenas stay."""
        regrown = False
        for step in self.steps:
            if step.remake is not None and changed.intersection(step.nodes):
                step.run = step.remake(graph)
                regrown |= self.scratch.sizes[step.scratch_id] > step.scratch
                step.scratch = max(step.scratch, self.scratch.sizes[step.scratch_id])
        if regrown:                           # (the same shapes ask for the same scratch: never so far)
            self._assign_storage(self.schedule.before if self.schedule else None)
        for slot, name in self.constant_nodes.items():
            if name in changed:
                node = graph.node(name)
                self.constants[slot] = KERNELS[node.op].make(Context(node.attrs, node.params, [], self.shapes[slot],
                                                                     NCHW, self.scratch))

    def _make(self, node, chain, layout, shape_of, pool=None):
        """The step function of ``node`` with the element-wise layers of ``chain`` absorbed (and ``pool``)."""
        kernel = KERNELS[node.op]
        ctx = self._context(node, layout, shape_of)
        try:
            fused = node.attrs.get("activation")            # an activation a pass fused into the node
            absorbed = [(fused["op"], fused["attrs"], {})] if fused else []
            absorbed += [(e.op, e.attrs, e.params) for e in chain]
            ctx.epilogue = [KERNELS[op].epilogue(Context(attrs, params, [shape_of[node.name]], shape_of[node.name],
                                                         layout, self.scratch))
                            for op, attrs, params in absorbed]
            if pool is not None:
                ctx.pool = fused_pool.PoolSpec(pool.attrs, tuple(shape_of[pool.name][2:]),
                                               tuple(op in fused_pool.INCREASING for op, _, _ in absorbed))
            run = kernel.make(ctx)
        except CnnGraphError:
            raise
        except Exception as error:           # a kernel that cannot handle this configuration
            raise CnnGraphError(f"{node.label()}: the NumPy backend cannot compile it: {error}") from error
        return run

    def _fused_pools(self, graph, shape_of) -> dict:
        """Host node -> the MaxPool2d that alone reads its value (fused_pool.pool_follower), where the host's
        kernel can run it inside its step."""
        pools = {}
        for node in graph.layers() if fused_pool.ENABLED else ():
            kernel = KERNELS[node.op]
            pool = None if kernel.hosts_pool is None else fused_pool.pool_follower(
                graph, node, self.epilogues.get(node.name, []))
            if pool is not None and kernel.layouts[0] in KERNELS[pool.op].layouts and kernel.hosts_pool(
                    self._context(node, kernel.layouts[0], shape_of)):
                pools[node.name] = pool
        return pools

    def _context(self, node, layout, shape_of) -> Context:
        """What ``node``'s kernel is built from: its attributes, parameters and shapes, in ``layout``."""
        return Context(node.attrs, node.params, [shape_of[i] for i in node.inputs], shape_of[node.name], layout,
                       self.scratch)

    # --- storage -----------------------------------------------------------------------------------------
    def _assign_storage(self, before: list[int] | None = None) -> None:
        """Storage for every slot (storage.py); ``before``: for a plan whose steps run on several lanes."""
        store = storage.assign(self.steps, self.shapes, self.view_of, self.inplace_candidate, self.output_slots,
                               before, [step.scratch for step in self.steps])
        self.scratch.bind(store.arena, {self.steps[index].scratch_id: offset
                                        for index, offset in store.scratch_offsets.items()})
        for step in self.steps:
            slot = step.writes
            step.fresh = slot in store.fresh and slot not in self.view_of
            if slot in self.view_of:
                step.out = None
            elif step.fresh:
                step.out = self.shapes[slot]
            else:
                step.out = store.view(slot, self.shapes[slot])
        self.output_copies = [slot not in store.fresh for slot in self.output_slots]
        self.pool_bytes = store.arena.nbytes
        self.pool_slots = {slot for slot in store.group_of if slot not in self.view_of}

    # --- running -----------------------------------------------------------------------------------------
    def run(self, arrays) -> list[np.ndarray]:
        values: list = [None] * len(self.shapes)
        for slot, array in zip(self.input_slots, arrays):
            values[slot] = array
        for slot, array in self.constants.items():
            values[slot] = array
        if self.schedule is not None:
            schedule.run_lanes(self.schedule, lambda index: _execute(self.steps[index], values))
        elif self.lanes > 1:                      # the first run: sequential, timed, then spread over the lanes
            costs = []
            for step in self.steps:
                start = time.perf_counter()
                _execute(step, values)
                costs.append(time.perf_counter() - start)
        else:
            for step in self.steps:
                _execute(step, values)
        outputs = [np.array(values[slot]) if copy else values[slot]
                   for slot, copy in zip(self.output_slots, self.output_copies)]
        if self.lanes > 1 and self.schedule is None:
            self._spread(costs)
        return outputs

    def _spread(self, costs: list[float]) -> None:
        """Schedule the steps on the lanes by their measured ``costs``, reorder them by start time and assign
        storage again so that no buffer is reused while a step of another lane may still use it."""
        producer = {step.writes: index for index, step in enumerate(self.steps)}
        spread = schedule.list_schedule(schedule.predecessors(self.steps, producer), costs, self.lanes)
        self.steps = [self.steps[index] for index in spread.order]
        self._assign_storage(spread.before)
        self.schedule = spread


def _execute(step: Step, values: list) -> None:
    out = np.empty(step.out, np.float32) if step.fresh else step.out
    values[step.writes] = step.run([values[s] for s in step.reads], out)


def epilogue_chains(graph) -> dict[str, list]:
    """For each node whose kernel hosts epilogues: the chain of element-wise nodes after it, each the only
    reader of the previous value (which is not a graph output), that can run as its epilogue."""
    outputs = set(graph.outputs)
    chains = {}
    for node in graph.layers():
        if not KERNELS[node.op].hosts_epilogue:
            continue
        chain, current = [], node
        while current.name not in outputs and graph.use_count(current.name) == 1:
            follower = graph.node(graph.users(current.name)[0])
            if KERNELS[follower.op].epilogue is None or len(follower.inputs) != 1:
                break
            chain.append(follower)
            current = follower
        if chain:
            chains[node.name] = chain
    return chains


def _transpose(inputs, out):
    np.copyto(out, inputs[0].transpose(1, 0, 2, 3))
    return out
