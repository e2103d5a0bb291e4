'use strict';
// Time separators between chat bubbles, from the frames' `time` (the room's
// clock, unix milliseconds), shown in the phone's local time.

// A separator goes above a message that comes more than GAP after the one
// before it, and above the first message held.
const GAP = 5 * 60 * 1000;

function pad(n) {
  return n < 10 ? '0' + n : String(n);
}

function sameDay(a, b) {
  return a.getFullYear() === b.getFullYear() && a.getMonth() === b.getMonth() && a.getDate() === b.getDate();
}

// label(time, now) → "14:05" today, "Yesterday 14:05", "3/7 14:05" this year,
// "2023/3/7 14:05" before; '' for a missing time.
function label(time, now) {
  if (typeof time !== 'number' || !(time > 0)) return '';
  const d = new Date(time);
  const n = new Date(typeof now === 'number' ? now : Date.now());
  const hm = pad(d.getHours()) + ':' + pad(d.getMinutes());
  if (sameDay(d, n)) return hm;
  const y = new Date(n.getFullYear(), n.getMonth(), n.getDate() - 1);
  if (sameDay(d, y)) return 'Yesterday ' + hm;
  const md = (d.getMonth() + 1) + '/' + d.getDate() + ' ' + hm;
  if (d.getFullYear() === n.getFullYear()) return md;
  return d.getFullYear() + '/' + md;
}

// needsSeparator(prevTime, time): true above the first message and after a pause longer than GAP.
function needsSeparator(prevTime, time) {
  if (typeof time !== 'number' || !(time > 0)) return false;
  if (typeof prevTime !== 'number' || !(prevTime > 0)) return true;
  return time - prevTime > GAP;
}

module.exports = { label, needsSeparator, GAP };
