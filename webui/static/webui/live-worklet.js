/* The live page's audio worklet: the microphone's samples turned into 16-kHz mono 16-bit PCM,
   posted to the page every 100 ms with the piece's level (RMS) for the meter. The context usually
   runs at 16 kHz already (the browser resamples); otherwise this resamples, averaging the input
   samples that fall in each output sample (a box filter against aliasing). */
class PcmSender extends AudioWorkletProcessor {
  constructor() {
    super();
    this.ratio = sampleRate / 16000;
    this.piece = new Int16Array(1600);
    this.filled = 0;
    this.sum = 0;
    this.count = 0;
    this.phase = 0;
    this.squares = 0;
  }

  push(value) {
    const s = Math.max(-1, Math.min(1, value));
    this.piece[this.filled++] = s < 0 ? s * 32768 : s * 32767;
    this.squares += s * s;
    if (this.filled === this.piece.length) {
      const level = Math.sqrt(this.squares / this.filled);
      this.port.postMessage({ pcm: this.piece.buffer, level }, [this.piece.buffer]);
      this.piece = new Int16Array(1600);
      this.filled = 0;
      this.squares = 0;
    }
  }

  process(inputs) {
    const channels = inputs[0];
    if (!channels || channels.length === 0) return true;
    const frames = channels[0].length;
    for (let i = 0; i < frames; i++) {
      let mono = 0;
      for (const channel of channels) mono += channel[i];
      mono /= channels.length;
      if (this.ratio === 1) { this.push(mono); continue; }
      this.sum += mono;
      this.count += 1;
      this.phase += 1;
      if (this.phase >= this.ratio) {
        this.phase -= this.ratio;
        this.push(this.sum / this.count);
        this.sum = 0;
        this.count = 0;
      }
    }
    return true;
  }
}

registerProcessor("pcm-sender", PcmSender);
