import { listMute } from './muteActorList.js'

export default listMute(false)
