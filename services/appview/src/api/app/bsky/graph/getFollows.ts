import { followList } from './getFollowers.js'

export default followList('follows')
