namespace Alora.Tokenization;

/// <summary>
/// The symbols of one word during BPE merging: a doubly linked list over arrays, and a priority
/// queue of candidate merges ordered by (rank, position). Reused across words by one thread.
/// </summary>
internal sealed class BpeWord
{
    private int[] _ids = new int[64];   // [symbols] token id of each symbol
    private int[] _prev = new int[64];  // [symbols] index of the previous live symbol, or -1
    private int[] _next = new int[64];  // [symbols] index of the next live symbol, or -1
    private bool[] _dead = new bool[64]; // [symbols] merged into its left neighbour
    private int _count;
    private readonly PriorityQueue<int, long> _queue = new();

    public void Reset(int capacity)
    {
        if (_ids.Length < capacity)
        {
            int size = Math.Max(capacity, _ids.Length * 2);
            _ids = new int[size]; _prev = new int[size]; _next = new int[size]; _dead = new bool[size];
        }
        _count = 0;
    }

    public void Add(int id)
    {
        if (_count == _ids.Length)
        {
            Array.Resize(ref _ids, _count * 2); Array.Resize(ref _prev, _count * 2);
            Array.Resize(ref _next, _count * 2); Array.Resize(ref _dead, _count * 2);
        }
        _ids[_count] = id;
        _prev[_count] = _count - 1;
        _next[_count] = -1;
        _dead[_count] = false;
        if (_count > 0) _next[_count - 1] = _count;
        _count++;
    }

    /// <param name="merges">(left id &lt;&lt; 32 | right id) -> (rank &lt;&lt; 32 | merged id)</param>
    public void MergeAll(Dictionary<long, long> merges)
    {
        if (_count < 2) return;
        var queue = _queue;
        queue.Clear();
        for (int i = 0; i + 1 < _count; i++) Enqueue(merges, i, _ids[i], _ids[i + 1]);

        while (queue.TryDequeue(out int position, out long priority))
        {
            if (_dead[position]) continue;
            int right = _next[position];
            if (right < 0) continue;
            // Stale entry: the pair at this position changed since it was queued.
            if (!merges.TryGetValue(((long)_ids[position] << 32) | (uint)_ids[right], out long merge) || (merge >> 32) != (priority >> 32)) continue;

            _ids[position] = (int)merge;
            _dead[right] = true;
            int afterRight = _next[right];
            _next[position] = afterRight;
            if (afterRight >= 0) _prev[afterRight] = position;

            int left = _prev[position];
            if (left >= 0) Enqueue(merges, left, _ids[left], _ids[position]);
            if (afterRight >= 0) Enqueue(merges, position, _ids[position], _ids[afterRight]);
        }
    }

    private void Enqueue(Dictionary<long, long> merges, int position, int leftId, int rightId)
    {
        if (merges.TryGetValue(((long)leftId << 32) | (uint)rightId, out long merge))
            _queue.Enqueue(position, (merge & ~0xFFFFFFFFL) | (uint)position);
    }

    public void AppendIds(List<int> output)
    {
        for (int i = 0; i >= 0 && i < _count; i = _next[i]) output.Add(_ids[i]);
    }
}
