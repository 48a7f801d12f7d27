using System.Diagnostics;
using System.Runtime.InteropServices;
using Alora.Inference;
using Alora.Models;

namespace Alora.Serving;

public sealed partial class Engine
{
    private void StepCore()
    {
        _report.Clear();
        AcceptSubmitted();
        ProcessCancellations();
        ProcessUnloads();
        Schedule();
        if (_plan.Count > 0)
        {
            Interlocked.Increment(ref _steps);
            if (RunForward()) CommitAndSample();
        }
        CompleteUnloads();
        _runningCount = _running.Count;
        _waitingCount = _waiting.Count;
    }

    private void AcceptSubmitted()
    {
        while (_incoming.TryDequeue(out var r))
        {
            _live[r.Id] = r;
            if (r.State.Finished) { Finish(r); continue; }   // max tokens 0: nothing to compute
            _waiting.Add(r);
        }
    }

    private void ProcessCancellations()
    {
        while (_cancellations.TryDequeue(out long id))
        {
            if (!_live.TryGetValue(id, out var r)) continue;
            Retire(r, r.CancellationToken.IsCancellationRequested
                ? new OperationCanceledException("the request was cancelled", r.CancellationToken)
                : new OperationCanceledException("the request's stream was closed before it finished"));
        }
    }

    // ───────────── scheduling ─────────────

    /// <summary>
    /// One step's plan, in four passes under the token budget:
    /// <list type="number">
    /// <item>decode rows: every running request whose prompt is done gets its next token, oldest first; when the
    /// pool cannot hold one, the newest running request not yet in the plan is preempted (its blocks freed, full
    /// ones stay cached) and recomputed later;</item>
    /// <item>short prompts (with <see cref="EngineOptions.ShortPrefillTokens"/>): waiting requests whose uncached
    /// remainder is that short — an intrinsic after a cached conversation — are admitted ahead of the queue, and the
    /// step's other prompt work is then held to that many tokens, so the step stays short;</item>
    /// <item>prompt chunks of running requests, oldest first;</item>
    /// <item>waiting requests, first come first served: each takes its cached prefix from the prefix cache and
    /// schedules the rest in chunks. Nothing is admitted in a step that preempted.</item>
    /// </list>
    /// </summary>
    private void Schedule()
    {
        _plan.Clear();
        _stepNumber++;
        int budget = Options.MaxTokensPerStep;
        bool preempted = false;

        // 1. Decode rows.
        for (int i = 0; i < _running.Count && budget > 0; i++)
        {
            var r = _running[i];
            if (r.Tokens.Count - r.Computed != 1) continue;   // one token left: the next token (or a prompt's last one)
            if (!Reserve(r, 1, ref preempted)) { i = _running.IndexOf(r) < 0 ? i - 1 : i; continue; }
            budget -= 1;
        }

        // 2. Short prompts jump the queue and keep the step short.
        int promptBudget = budget;
        if (!preempted && Options.ShortPrefillTokens > 0)
        {
            int shortTokens = 0;
            for (int w = 0; w < _waiting.Count && _running.Count < Options.MaxRunningRequests && budget > 0;)
            {
                var r = _waiting[w];
                var tokens = r.Tokens.Span;
                int hit = _blocks.FindCachedPrefix(tokens, tokens.Length - 1, r.AdapterId, r.AdapterStart, _hitBlocks, _hitHashes);
                int rest = tokens.Length - hit;
                if (rest > Options.ShortPrefillTokens || rest > budget || !Admit(r, hit, rest)) { w++; continue; }
                budget -= rest;
                shortTokens += rest;
            }
            if (shortTokens > 0) promptBudget = Math.Min(budget, Options.ShortPrefillTokens);
        }
        promptBudget = Math.Min(promptBudget, budget);

        // 3. Prompt chunks of running requests.
        for (int i = 0; i < _running.Count && promptBudget > 0; i++)
        {
            var r = _running[i];
            if (r.PlannedStep == _stepNumber) continue;
            int n = PrefillCap(Math.Min(r.Tokens.Count - r.Computed, promptBudget));
            if (!Reserve(r, n, ref preempted)) { i = _running.IndexOf(r) < 0 ? i - 1 : i; continue; }
            promptBudget -= n;
            budget -= n;
        }

        // 4. Waiting requests, first come first served.
        while (!preempted && promptBudget > 0 && _waiting.Count > 0 && _running.Count < Options.MaxRunningRequests)
        {
            var r = _waiting[0];
            var tokens = r.Tokens.Span;
            // Always compute at least the last token: its logits are what the request samples from.
            int hit = _blocks.FindCachedPrefix(tokens, tokens.Length - 1, r.AdapterId, r.AdapterStart, _hitBlocks, _hitHashes);
            int n = PrefillCap(Math.Min(tokens.Length - hit, promptBudget));
            if (!Admit(r, hit, n))
            {
                if (_running.Count == 0 && _plan.Count == 0)
                    Retire(r, new KvCacheFullException($"request {r.Id} needs {hit + n} tokens of KV cache and the whole cache holds {(long)_blocks.BlockCount * _blocks.BlockSize}; raise the KV cache size"));
                else break;   // first come, first served: later requests wait too
                continue;
            }
            promptBudget -= n;
            budget -= n;
        }
    }

    private long _stepNumber;

    /// <summary>
    /// Plans <paramref name="n"/> more tokens of a running request, growing its blocks; when the pool is short, the
    /// newest running request not yet planned this step is preempted until it fits (r itself, when it is that
    /// one). False when r could not be planned (preempted itself, or failed because the pool cannot hold it at all).
    /// </summary>
    private bool Reserve(EngineRequest r, int n, ref bool preempted)
    {
        while (!TryGrow(r, n))
        {
            EngineRequest? victim = null;
            for (int v = _running.Count - 1; v >= 0; v--)
                if (_running[v].PlannedStep != _stepNumber) { victim = _running[v]; break; }
            if (victim is null || (victim == r && _running.Count == 1))
            {
                if (_running.Count == 1)
                    Retire(r, new KvCacheFullException(
                        $"request {r.Id} needs {r.Computed + n} tokens of KV cache and the whole cache holds {(long)_blocks.BlockCount * _blocks.BlockSize}; raise the KV cache size or lower the request's maximum tokens"));
                return false;   // everything else is planned: r waits for a later step
            }
            Preempt(victim);
            preempted = true;
            if (victim == r) return false;
        }
        r.PlannedStep = _stepNumber;
        _plan.Add((r, n));
        return true;
    }

    /// <summary>Admits a waiting request with its cached prefix (<see cref="_hitBlocks"/>) and plans its first <paramref name="n"/> tokens; false when the pool cannot hold them.</summary>
    private bool Admit(EngineRequest r, int hit, int n)
    {
        var tokens = r.Tokens.Span;
        int newBlocks = BlocksFor(hit + n) - _hitBlocks.Count;
        if (_blocks.BlocksNeeded(_hitBlocks, newBlocks) > _blocks.FreeBlockCount) return false;
        _waiting.Remove(r);
        _blocks.Acquire(_hitBlocks);
        r.Blocks.AddRange(CollectionsMarshal.AsSpan(_hitBlocks));
        r.BlockHashes.AddRange(_hitHashes);
        for (int b = 0; b < newBlocks; b++) r.Blocks.Add(_blocks.Allocate());
        r.Computed = hit;
        if (r.CachedPromptTokens < 0) r.CachedPromptTokens = Math.Min(hit, r.Request.PromptIds.Length);
        if (r.FirstScheduled == 0) r.FirstScheduled = Stopwatch.GetTimestamp();
        Interlocked.Add(ref _queryTokens, tokens.Length);
        Interlocked.Add(ref _hitTokens, hit);
        r.Running = true;
        _running.Add(r);
        r.PlannedStep = _stepNumber;
        _plan.Add((r, n));
        return true;
    }

    /// <summary>A prompt chunk capped at the long-prefill threshold (decode rows, one token, are never capped).</summary>
    private int PrefillCap(int n) => Options.LongPrefillThreshold > 0 ? Math.Min(n, Options.LongPrefillThreshold) : n;

    private int BlocksFor(int tokens) => (tokens + _blocks.BlockSize - 1) / _blocks.BlockSize;

    /// <summary>Allocates the blocks for <paramref name="n"/> more tokens of a running request, all or none.</summary>
    private bool TryGrow(EngineRequest r, int n)
    {
        int needed = BlocksFor(r.Computed + n) - r.Blocks.Count;
        if (needed > _blocks.FreeBlockCount) return false;
        for (int b = 0; b < needed; b++) r.Blocks.Add(_blocks.Allocate());
        return true;
    }

    /// <summary>Frees a running request's blocks (full ones stay cached) and puts it first in line, to be recomputed.</summary>
    private void Preempt(EngineRequest r)
    {
        _blocks.Release(r.Blocks.Span);
        r.Blocks.Clear();
        r.BlockHashes.Clear();
        r.Computed = 0;
        r.Running = false;
        _running.Remove(r);
        _waiting.Insert(0, r);
        Interlocked.Increment(ref _preemptions);
        _report.Preempted.Add(r.Id);
    }

    // ───────────── forward, sampling, commit ─────────────

    private bool RunForward()
    {
        _chunks.Clear();
        int logitRows = 0;
        foreach (var (r, n) in _plan)
        {
            bool last = r.Computed + n == r.Tokens.Count;
            if (last) logitRows++;
            var adapter = r.Adapter?.Adapter;
            _chunks.Add(new ForwardChunk(r.Blocks.Memory(), r.Computed, r.Tokens.Memory(r.Computed, n),
                last ? LogitRows.Last : LogitRows.None, adapter, adapter is null ? int.MaxValue : r.AdapterStart));
            bool decode = n == 1 && r.State.Generated > 0 && r.Computed == r.Tokens.Count - 1;
            _report.Scheduled.Add(new ScheduledWork(r.Id, n, !decode));
            _report.TokenCount += n;
        }
        long needed = (long)logitRows * _model.VocabSize;
        if (_logits.Length < needed) _logits = new float[Math.Max(needed, (long)Math.Min(Options.MaxRunningRequests, 16) * _model.VocabSize)];
        try
        {
            _model.Forward(_chunks, _pool, _logits);
            return true;
        }
        catch (Exception e)
        {
            // Nothing is committed: the step's requests fail, their blocks go back (none was registered).
            foreach (var (r, _) in _plan) Retire(r, e);
            _plan.Clear();
            return false;
        }
    }

    private void CommitAndSample()
    {
        int row = 0;
        int v = _model.VocabSize;
        foreach (var (r, n) in _plan)
        {
            int promptLeft = Math.Max(0, r.Request.PromptIds.Length - r.Computed);
            Interlocked.Add(ref _promptTokensComputed, Math.Min(n, promptLeft));
            r.Computed += n;
            RegisterFullBlocks(r);
            if (r.Computed < r.Tokens.Count) continue;   // a prompt chunk that is not the last
            var logits = _logits.AsSpan(row++ * v, v);
            Options.LogitsObserver?.Invoke(r.Id, logits);
            var update = r.State.Advance(logits);
            if (r.FirstToken == 0) r.FirstToken = Stopwatch.GetTimestamp();
            if (!r.State.Finished) r.Tokens.Add(r.State.LastToken);
            if (update is not null)
            {
                Interlocked.Increment(ref _generatedTokens);
                r.Output.TryWrite(update);
            }
            if (r.State.Finished) Finish(r);
        }
    }

    /// <summary>Makes the request's newly completed blocks findable (hash chained on the previous block's).</summary>
    private void RegisterFullBlocks(EngineRequest r)
    {
        int b = _blocks.BlockSize;
        var tokens = r.Tokens.Span;
        for (int index = r.BlockHashes.Count; (index + 1) * b <= r.Computed; index++)
        {
            var blockTokens = tokens.Slice(index * b, b);
            var lineage = BlockLineage.Of(index, b, r.AdapterId, r.AdapterStart);
            ulong hash = _blocks.Hash(index == 0 ? 0 : r.BlockHashes[index - 1], blockTokens, lineage);
            r.BlockHashes.Add(hash);
            _blocks.Register(r.Blocks[index], hash, blockTokens, lineage, index == 0 ? -1 : r.Blocks[index - 1]);
        }
    }

    private void Finish(EngineRequest r)
    {
        long now = Stopwatch.GetTimestamp();
        double prefill = r.FirstScheduled == 0 ? 0 : Stopwatch.GetElapsedTime(r.FirstScheduled, r.FirstToken == 0 ? now : r.FirstToken).TotalSeconds;
        double decode = r.FirstToken == 0 ? 0 : Stopwatch.GetElapsedTime(r.FirstToken, now).TotalSeconds;
        double queue = r.FirstScheduled == 0 ? 0 : Stopwatch.GetElapsedTime(r.Arrival, r.FirstScheduled).TotalSeconds;
        double ttft = r.FirstToken == 0 ? 0 : Stopwatch.GetElapsedTime(r.Arrival, r.FirstToken).TotalSeconds;
        r.Output.TryWrite(r.State.Final(Math.Max(0, r.CachedPromptTokens), prefill, decode, queue, ttft));
        Retire(r, null);
        Interlocked.Increment(ref _finished);
        _report.Finished.Add(r.Id);
    }

    /// <summary>Ends a request: its blocks go back, its stream completes (with the error, for a cancellation, a failed step or disposal).</summary>
    private void Retire(EngineRequest r, Exception? error)
    {
        _blocks.Release(r.Blocks.Span);
        r.Blocks.Clear();
        r.BlockHashes.Clear();
        if (r.Running) _running.Remove(r); else _waiting.Remove(r);
        r.Running = false;
        _live.Remove(r.Id);
        if (r.Adapter is { } adapter) Interlocked.Decrement(ref adapter.ActiveRequests);
        r.Output.TryComplete(error);
        r.Registration.Dispose();
    }

    private void FailAll(Exception error)
    {
        foreach (var r in _live.Values.ToArray()) Retire(r, error);
    }

    // ───────────── adapter unloading ─────────────

    private void ProcessUnloads()
    {
        while (_unloads.TryDequeue(out var entry)) _pendingUnloads.Add(entry);
    }

    private void CompleteUnloads()
    {
        for (int i = _pendingUnloads.Count - 1; i >= 0; i--)
        {
            var entry = _pendingUnloads[i];
            if (Volatile.Read(ref entry.ActiveRequests) > 0) continue;
            lock (_adapters) _adapters.Remove(entry.Name);
            _blocks.Evict(entry.Id);
            _pendingUnloads.RemoveAt(i);
            entry.Unloaded.TrySetResult();
        }
    }
}
